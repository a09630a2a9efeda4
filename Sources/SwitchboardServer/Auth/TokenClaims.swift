import Foundation
import JWTKit
import SwitchboardCore

/// The claims Switchboard reads from a JWT (SPEC §2): `sub` (required), `role`, `tier`, `exp`.
struct TokenClaims: JWTPayload {
    var sub: SubjectClaim?
    var role: String?
    var tier: String?
    var exp: ExpirationClaim?

    func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp?.verifyNotExpired()
        guard let sub, !sub.value.isEmpty else { throw TokenError("token has no 'sub' claim") }
        guard role.map({ Role(rawValue: $0) != nil }) ?? true else {
            throw TokenError("token has an unknown role '\(role ?? "")'")
        }
    }

    /// The identity these (verified) claims describe. An `anonymous` role claim is read as `user`:
    /// a token always names a user.
    var identity: Identity {
        let role = role.flatMap(Role.init(rawValue:)).map { $0 == .anonymous ? .user : $0 } ?? .user
        return Identity(userId: sub?.value, role: role, tier: tier, expiresAt: exp?.value.timeIntervalSince1970)
    }
}

/// A token that was refused.
struct TokenError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
