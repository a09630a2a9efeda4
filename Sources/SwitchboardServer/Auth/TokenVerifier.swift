import Foundation
import JWTKit
public import SwitchboardCore

/// Verifies JWTs with the configured HS256 secret and/or PEM public key (RS256 or ES256).
public struct TokenVerifier: Sendable {
    /// One key collection per accepted `alg`, so a token is only ever checked with a key of its own
    /// algorithm (no HS256-signed-with-the-RSA-public-key confusion).
    private let keysByAlgorithm: [String: JWTKeyCollection]

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
    public init(secret: String?, publicKeyPEM: String?) async throws {
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

    /// Verifies `token` and returns the identity it carries.
    public func verify(_ token: String) async throws(Failure) -> Identity {
        guard isConfigured else { throw Failure(description: Self.notConfiguredMessage) }
        guard let algorithm = Self.algorithm(of: token) else {
            throw Failure(description: "invalid token: malformed")
        }
        guard let keys = keysByAlgorithm[algorithm] else {
            throw Failure(description: "invalid token: algorithm \(algorithm.prefix(16)) is not accepted here")
        }
        do {
            return try await keys.verify(token, as: TokenClaims.self).identity
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
