import Foundation
import JWTKit
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// SPEC §2's numeric claims (issue 34, defect 2): a correctly signed token whose `exp` lay past year 9999 used to
/// stop the node (SIGILL: the expiry timer's `Int64` conversion trapped), and `nbf` was never checked. Every
/// numeric claim must be a NumericDate within 0 … 253402300799, `exp` and `nbf` are honoured with
/// `jwt-leeway-ms`, and no value of any claim can stop the node.
@Suite struct TokenClaimTests {
    /// A JWT payload of any JSON values, signed with the test secret.
    struct RawClaims: JWTPayload {
        let fields: [String: Value]

        enum Value: Encodable, Sendable {
            case number(Double)
            case text(String)

            func encode(to encoder: any Encoder) throws {
                var container = encoder.singleValueContainer()
                switch self {
                case .number(let number): try container.encode(number)
                case .text(let text): try container.encode(text)
                }
            }
        }

        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        init(_ fields: [String: Value]) { self.fields = fields }
        init(from decoder: any Decoder) throws { fields = [:] }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Key.self)
            for (name, value) in fields { try container.encode(value, forKey: Key(stringValue: name)) }
        }

        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    static func token(_ claims: [String: RawClaims.Value]) async throws -> String {
        let keys = await JWTKeyCollection().add(hmac: HMACKey(from: TestNode.secret), digestAlgorithm: .sha256)
        return try await keys.sign(RawClaims(["sub": .text("claims")].merging(claims) { _, new in new }))
    }

    static var now: Double { Date().timeIntervalSince1970 }

    static let refused: [(String, [String: RawClaims.Value])] = [
        ("exp 1e16", ["exp": .number(1e16)]),
        ("exp 1e17", ["exp": .number(1e17)]),
        ("exp 1e300", ["exp": .number(1e300)]),
        ("exp -1", ["exp": .number(-1)]),
        ("exp \"soon\"", ["exp": .text("soon")]),
        ("exp past year 9999", ["exp": .number(253_402_300_800)]),
        ("nbf in an hour", ["nbf": .number(now + 3_600)]),
        ("nbf \"now\"", ["nbf": .text("now")]),
        ("nbf 1e17", ["nbf": .number(1e17)]),
        ("iat 1e300", ["iat": .number(1e300)]),
    ]

    /// Each is refused with 401 on the upgrade and `UNAUTHORIZED` in-band, and the node serves on.
    @Test func tokensWithAbsurdOrFutureClaimsAreUnauthorizedAndTheNodeLives() async throws {
        try await TestNode.with({ $0.blockAfterFailures = 1_000 }) { node in
            for (name, claims) in Self.refused {
                let token = try await Self.token(claims)
                let upgrade = try await node.upgrade(path: "/ws?token=\(token)")
                #expect(upgrade.refusal?.status == 401, "\(name): the upgrade")
                let client = try await node.client()
                let reply = try await client.request(["type": "auth", "token": token, "id": 1])
                #expect(reply["code"] as? String == "UNAUTHORIZED", "\(name): in-band \(reply)")
                await client.close()
                let api = try await node.request("GET", "/api/v1/websocket/stats", token: token)
                #expect(api.status == 401, "\(name): the HTTP API")
            }
            let after = try await node.client()
            #expect(try await after.request(["type": "ping"])["type"] as? String == "pong")
        }
    }

    /// `exp` and `nbf` in range are honoured, within `jwt-leeway-ms`.
    @Test func expAndNbfAreComparedWithTheLeeway() async throws {
        try await TestNode.with({ $0.jwtLeeway = .milliseconds(5_000); $0.blockAfterFailures = 1_000 }) { node in
            let justExpired = try await Self.token(["exp": .number((Self.now - 2).rounded(.down))])
            let almostValid = try await Self.token(["nbf": .number((Self.now + 2).rounded(.up))])
            let longExpired = try await Self.token(["exp": .number(Self.now - 60)])
            let farFuture = try await Self.token(["exp": .number(253_402_300_799), "iat": .number(Self.now.rounded())])
            #expect(try await node.upgrade(path: "/ws?token=\(justExpired)").isUpgraded, "2 s past exp, 5 s leeway")
            #expect(try await node.upgrade(path: "/ws?token=\(almostValid)").isUpgraded, "2 s before nbf, 5 s leeway")
            #expect(try await node.upgrade(path: "/ws?token=\(longExpired)").refusal?.status == 401)
            #expect(try await node.upgrade(path: "/ws?token=\(farFuture)").isUpgraded, "exp at the end of year 9999")
        }
    }
}
