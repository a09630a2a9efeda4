import Foundation
import JWTKit
public import SwitchboardCore

/// Mints HS256 tokens with the configured secret (`switchboard token`, `serve --demo`).
public struct TokenIssuer: Sendable {
    private let keys: JWTKeyCollection

    public init(secret: String) async {
        keys = await JWTKeyCollection().add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
    }

    /// A signed token for `userId` with `role`, optional `tier` and granted `channels` (SPEC §14), expiring after `ttl`
    /// when given.
    public func token(
        userId: String, role: Role, tier: String? = nil, channels: [String]? = nil, ttl: Duration? = nil
    ) async throws -> String {
        // `exp` is a NumericDate: whole seconds (RFC 7519 §2 allows fractions, but many libraries reject them).
        let expiry = ttl.map { ttl in
            Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + Double(ttl.components.seconds)).rounded(.down))
        }
        return try await token(userId: userId, role: role, tier: tier, channels: channels, expiresAt: expiry)
    }

    /// A signed token expiring at `expiresAt` (which may be in the past, for tests).
    func token(userId: String, role: Role, tier: String?, channels: [String]? = nil, expiresAt expiry: Date?) async throws -> String {
        let claims = TokenClaims(
            sub: SubjectClaim(value: userId), role: role.rawValue, tier: tier, channels: channels, exp: expiry.map(ExpirationClaim.init(value:)))
        return try await keys.sign(claims)
    }
}
