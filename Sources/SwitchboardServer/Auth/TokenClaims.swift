import Foundation
import JWTKit
import SwitchboardCore

/// The claims Switchboard reads from a JWT (SPEC §2): `sub` (required), `role`, `tier`, `exp`, `nbf`, `iat`, and
/// `channels`, the channels granted beyond the namespace rules (SPEC §14).
struct TokenClaims: JWTPayload {
    var sub: SubjectClaim?
    var role: String?
    var tier: String?
    var channels: [String]? = nil
    var exp: ExpirationClaim?
    var nbf: NotBeforeClaim? = nil
    var iat: IssuedAtClaim? = nil

    /// The latest NumericDate a claim may carry: 9999-12-31T23:59:59Z (SPEC §2).
    static let latestNumericDate: Double = 253_402_300_799

    /// The token's structure: numeric claims in range, a subject, a known role. Its time (`exp`, `nbf`) is
    /// checked by ``isValid(at:leeway:)``, with the verifier's leeway.
    func verify(using algorithm: some JWTAlgorithm) async throws {
        // SPEC §2, §13: no claim's value is trusted to be in range before any arithmetic on it.
        for (name, date) in [("exp", exp?.value), ("nbf", nbf?.value), ("iat", iat?.value)] {
            guard let seconds = date?.timeIntervalSince1970 else { continue }
            guard seconds.isFinite, (0...Self.latestNumericDate).contains(seconds) else {
                throw TokenError("'\(name)' is not a NumericDate between 1970 and 9999")
            }
        }
        guard let sub, !sub.value.isEmpty else { throw TokenError("token has no 'sub' claim") }
        guard role.map({ Role(rawValue: $0) != nil }) ?? true else {
            throw TokenError("token has an unknown role '\(role ?? "")'")
        }
        if let channels, let refusal = Identity.refusal(ofGrants: channels) { throw TokenError("token's 'channels': \(refusal)") }
    }

    /// Why the token is not valid at `now` (seconds since the epoch), `exp` and `nbf` compared with a
    /// tolerance of `leeway` seconds; nil when it is.
    func refusal(at now: Double, leeway: Double) -> TokenError? {
        if let exp, exp.value.timeIntervalSince1970 + leeway <= now { return TokenError("expired") }
        if let nbf, nbf.value.timeIntervalSince1970 - leeway > now { return TokenError("not valid yet ('nbf')") }
        return nil
    }

    /// The identity these (verified) claims describe, its expiry `leeway` seconds after `exp` (when the token
    /// stops being accepted). An `anonymous` role claim is read as `user`: a token always names a user.
    func identity(leeway: Double) -> Identity {
        let role = role.flatMap(Role.init(rawValue:)).map { $0 == .anonymous ? .user : $0 } ?? .user
        return Identity(
            userId: sub?.value, role: role, tier: tier, expiresAt: exp.map { $0.value.timeIntervalSince1970 + leeway }, grants: channels ?? [])
    }
}

/// A token that was refused.
struct TokenError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
