import Foundation
import JWTKit
public import SwitchboardCore

/// Mints HS256 tokens with the configured secret (`switchboard token`, `serve --demo`).
public struct TokenIssuer: Sendable {
    private let keys: JWTKeyCollection

    public init(secret: String) async {
        keys = await JWTKeyCollection().add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
    }

    /// A signed token for `userId` with `role`, optional `tier`, expiring after `ttl` when given.
    public func token(userId: String, role: Role, tier: String? = nil, ttl: Duration? = nil) async throws -> String {
        let expiry = ttl.map { Date().addingTimeInterval(Double($0.components.seconds)) }
        let claims = TokenClaims(
            sub: SubjectClaim(value: userId), role: role.rawValue, tier: tier, exp: expiry.map(ExpirationClaim.init(value:)))
        return try await keys.sign(claims)
    }
}
