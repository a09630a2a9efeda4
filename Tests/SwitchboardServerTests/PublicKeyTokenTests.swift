import Foundation
import JWTKit
import RedisTestSupport
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// SPEC §2: RS256 and ES256 tokens verified with a PEM public key (`jwt-public-key`), on a live node.
@Suite struct PublicKeyTokenTests {
    /// A signing key and the PEM file of its public half.
    struct KeyPair {
        let signer: JWTKeyCollection
        let publicKeyPath: String
    }

    private static func temporaryFile(_ contents: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("key-\(UUID().uuidString).pem").path
        try contents.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Runs `openssl` with `arguments` and returns its stdout (off the concurrency pool: a 2048-bit key takes a
    /// while).
    private static func openssl(_ arguments: [String], input: String? = nil) async throws -> String {
        try await ChildProcess.output(of: "/usr/bin/env", ["openssl"] + arguments, input: input).standardOutput
    }

    static func rsaKeys() async throws -> KeyPair {
        let privatePEM = try await openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
        let publicPEM = try await openssl(["pkey", "-pubout"], input: privatePEM)
        let signer = await JWTKeyCollection().add(rsa: try Insecure.RSA.PrivateKey(pem: privatePEM), digestAlgorithm: .sha256)
        return KeyPair(signer: signer, publicKeyPath: try temporaryFile(publicPEM))
    }

    static func ecdsaKeys() async throws -> KeyPair {
        let key = ES256PrivateKey()
        let signer = await JWTKeyCollection().add(ecdsa: key)
        return KeyPair(signer: signer, publicKeyPath: try temporaryFile(key.publicKey.pemRepresentation))
    }

    private static func token(_ keys: JWTKeyCollection, userId: String, role: Role) async throws -> String {
        try await keys.sign(TokenClaims(sub: SubjectClaim(value: userId), role: role.rawValue, tier: "premium", exp: nil))
    }

    @Test(arguments: ["RS256", "ES256"])
    func tokensSignedWithThePrivateKeyAreAcceptedAndOthersRefused(algorithm: String) async throws {
        let keys = algorithm == "RS256" ? try await Self.rsaKeys() : try await Self.ecdsaKeys()
        let stranger = algorithm == "RS256" ? try await Self.rsaKeys() : try await Self.ecdsaKeys()
        defer { for path in [keys.publicKeyPath, stranger.publicKeyPath] { try? FileManager.default.removeItem(atPath: path) } }
        try await TestNode.with({
            $0.jwtSecret = nil
            $0.jwtPublicKey = keys.publicKeyPath
        }) { node in
            let good = try await Self.token(keys.signer, userId: "carol", role: .admin)
            let header = CommandLineTests.decodeSegment(String(good.split(separator: ".")[0])) ?? ""
            #expect(header.contains("\"\(algorithm)\""), "signed with \(algorithm): \(header)")
            let client = try await node.client(token: good)
            #expect(client.welcome["userId"] as? String == "carol")
            #expect(client.welcome["role"] as? String == "admin")
            let stats = try await node.request("GET", "/api/v1/websocket/stats", token: good)
            #expect(stats.status == 200, "the admin API takes the same tokens")
            await client.close()

            let forged = try await Self.token(stranger.signer, userId: "carol", role: .admin)
            #expect(try await node.upgrade(path: "/ws?token=\(forged)").refusal?.status == 401, "another key's signature")
            // An HS256 token "signed" with the public key's text must not pass (algorithm confusion).
            let pem = try String(contentsOfFile: keys.publicKeyPath, encoding: .utf8)
            let confused = try await TokenIssuer(secret: pem).token(userId: "carol", role: .admin)
            #expect(try await node.upgrade(path: "/ws?token=\(confused)").refusal?.status == 401, "HS256 is not accepted here")
        }
    }
}
