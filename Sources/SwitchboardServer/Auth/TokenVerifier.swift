import Foundation
import JWTKit
public import SwitchboardCore
import Synchronization

/// Verifies JWTs with the configured HS256 secret and/or PEM public key (RS256 or ES256).
public struct TokenVerifier: Sendable {
    /// One key collection per accepted `alg`, so a token is only ever checked with a key of its own
    /// algorithm (no HS256-signed-with-the-RSA-public-key confusion).
    private let keysByAlgorithm: [String: JWTKeyCollection]
    /// Tokens that passed verification lately (clients and operators send the same token with every request).
    private let recent = VerifiedTokens()
    /// The tolerance, in seconds, with which `exp` and `nbf` are compared (`jwt-leeway-ms`).
    private let leeway: Double

    /// Why a token was refused; always reported to clients as `UNAUTHORIZED`.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    /// Message used when no secret or key is configured (SPEC §11 names both settings).
    public static let notConfiguredMessage =
        "authentication is not configured on this server: set jwt-secret (SWITCHBOARD_JWT_SECRET) or jwt-public-key (SWITCHBOARD_JWT_PUBLIC_KEY)"

    /// - Parameters:
    ///   - secret: HS256 secret (at least 32 bytes, checked by ``Settings/validate()``).
    ///   - publicKeyPEM: contents of a PEM public key; RSA keys verify RS256, P-256 keys ES256.
    ///   - leeway: clock tolerance for `exp` and `nbf` (SPEC §2's `jwt-leeway-ms`).
    public init(secret: String?, publicKeyPEM: String?, leeway: Duration = .zero) async throws {
        self.leeway = max(0, Double(leeway.milliseconds) / 1000)
        var keysByAlgorithm: [String: JWTKeyCollection] = [:]
        if let secret {
            keysByAlgorithm["HS256"] = await JWTKeyCollection().add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        }
        if let publicKeyPEM {
            if let rsa = try? Insecure.RSA.PublicKey(pem: publicKeyPEM) {
                keysByAlgorithm["RS256"] = await JWTKeyCollection().add(rsa: rsa, digestAlgorithm: .sha256)
            } else if let ecdsa = try? ES256PublicKey(pem: publicKeyPEM) {
                keysByAlgorithm["ES256"] = await JWTKeyCollection().add(ecdsa: ecdsa)
            } else {
                throw SettingsError("jwt-public-key is neither an RSA nor a P-256 (ES256) PEM public key")
            }
        }
        self.keysByAlgorithm = keysByAlgorithm
    }

    /// Whether any key is configured; without one every token fails.
    public var isConfigured: Bool { !keysByAlgorithm.isEmpty }

    /// The identity of `token` if it was verified lately and has not expired since: exactly what ``verify(_:)``
    /// would return, without waiting (nil: call ``verify(_:)``).
    public func rememberedIdentity(of token: String) -> Identity? {
        recent.identity(of: token, now: Date().timeIntervalSince1970)
    }

    /// Verifies `token` and returns the identity it carries.
    public func verify(_ token: String) async throws(Failure) -> Identity {
        guard isConfigured else { throw Failure(description: Self.notConfiguredMessage) }
        // A remembered token passed every check below with the same keys; only its expiry can have changed.
        if let identity = rememberedIdentity(of: token) { return identity }
        guard let algorithm = Self.algorithm(of: token) else {
            throw Failure(description: "invalid token: malformed")
        }
        guard let keys = keysByAlgorithm[algorithm] else {
            throw Failure(description: "invalid token: algorithm \(algorithm.prefix(16)) is not accepted here")
        }
        do {
            let claims = try await keys.verify(token, as: TokenClaims.self)
            if let refusal = claims.refusal(at: Date().timeIntervalSince1970, leeway: leeway) { throw refusal }
            let identity = claims.identity(leeway: leeway)
            recent.remember(token, as: identity)
            return identity
        } catch let error as TokenError {
            throw Failure(description: "invalid token: \(error.description)")
        } catch let error as JWTError where error.errorType == .claimVerificationFailure {
            throw Failure(description: "invalid token: expired")
        } catch {
            throw Failure(description: "invalid token: bad signature or malformed")
        }
    }

    /// The `alg` of a token's header, or nil when the header cannot be read.
    static func algorithm(of token: String) -> String? {
        guard let header = token.split(separator: ".", omittingEmptySubsequences: false).first,
            let data = Data(base64URLEncoded: String(header)),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return nil }
        return object["alg"] as? String
    }
}

extension Data {
    /// Decodes unpadded base64url (RFC 7515 §2).
    init?(base64URLEncoded text: String) {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        self.init(base64Encoded: base64)
    }
}

/// Identities of recently verified tokens, so a token sent again skips the signature check and the claims'
/// decoding (which, with the HTTP request around it, is most of an API publish's CPU).
///
/// Exact, not a shortcut: a token's verification depends only on the token, the keys (fixed for the process)
/// and the time, through `exp` alone, and a remembered token is forgotten once its `exp` has passed. Only
/// tokens that passed verification enter, at most ``capacity`` of them.
final class VerifiedTokens: Sendable {
    static let capacity = 1024
    private let identities = Mutex<[String: Identity]>([:])

    /// The identity `token` was verified as, unless it has expired since (`now` in seconds since the epoch).
    func identity(of token: String, now: Double) -> Identity? {
        identities.withLock { identities in
            guard let identity = identities[token] else { return nil }
            if let expiresAt = identity.expiresAt, expiresAt <= now {
                identities[token] = nil
                return nil
            }
            return identity
        }
    }

    /// Remembers a verified token; when full, forgets everything first (a simple bound: refilling is cheap).
    func remember(_ token: String, as identity: Identity) {
        identities.withLock { identities in
            if identities.count >= Self.capacity { identities.removeAll(keepingCapacity: true) }
            identities[token] = identity
        }
    }
}
