import Foundation
import NIOCore
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// SPEC §3's message table and error codes, on a live node.
@Suite struct ProtocolTests {
    @Test func welcomeDescribesAnonymousConnection() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            #expect(client.welcome["role"] as? String == "anonymous")
            #expect(client.welcome["userId"] is NSNull)
            #expect(client.welcome["heartbeatMs"] as? Int == 25_000)
            #expect((client.welcome["connectionId"] as? String)?.isEmpty == false)
            await client.close()
        }
    }

    @Test func tokenInQueryAuthenticatesAtUpgrade() async throws {
        try await TestNode.with { node in
            let client = try await node.client(token: try await node.token("alice", tier: "premium"))
            #expect(client.welcome["role"] as? String == "user")
            #expect(client.welcome["userId"] as? String == "alice")
            await client.close()
        }
    }

    @Test func tokenInAuthorizationHeaderAuthenticatesAtUpgrade() async throws {
        try await TestNode.with { node in
            let token = try await node.token("root", role: .superAdmin)
            let outcome = try await node.upgrade(headers: [("Authorization", "Bearer \(token)")])
            guard case .upgraded(let socket) = outcome else { Issue.record("upgrade refused"); return }
            let welcome = try TestClient.parse(try await socket.nextText())
            #expect(welcome["role"] as? String == "super_admin")
            #expect(welcome["userId"] as? String == "root")
            await socket.close()
        }
    }

    @Test func authUpgradesAnonymousConnectionAndEchoesId() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            let reply = try await client.request(["type": "auth", "token": try await node.token("bob", tier: "enterprise"), "id": "a1"])
            #expect(reply["type"] as? String == "authenticated")
            #expect(reply["userId"] as? String == "bob")
            #expect(reply["role"] as? String == "user")
            #expect(reply["tier"] as? String == "enterprise")
            #expect(reply["id"] as? String == "a1")
            await client.close()
        }
    }

    @Test func authWithBadTokenIsUnauthorizedAndKeepsConnection() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            let reply = try await client.request(["type": "auth", "token": "not.a.token", "id": 7])
            #expect(reply["type"] as? String == "error")
            #expect(reply["code"] as? String == "UNAUTHORIZED")
            #expect(reply["id"] as? Int == 7)
            #expect(try await client.request(["type": "ping"])["type"] as? String == "pong")
            await client.close()
        }
    }

    @Test func authWithTokenSignedByAnotherSecretIsUnauthorized() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            let forged = try await TokenIssuer(secret: String(repeating: "x", count: 40)).token(userId: "mallory", role: .admin)
            let reply = try await client.request(["type": "auth", "token": forged])
            #expect(reply["code"] as? String == "UNAUTHORIZED")
            await client.close()
        }
    }

    @Test func authWithExpiredTokenIsUnauthorized() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            let expired = try await TestNode.expiredToken()
            let reply = try await client.request(["type": "auth", "token": expired])
            #expect(reply["code"] as? String == "UNAUTHORIZED")
            #expect((reply["message"] as? String)?.contains("expired") == true)
            await client.close()
        }
    }

    /// Verified tokens are remembered, but never past their `exp`.
    @Test func rememberedTokensAreForgottenAtTheirExpiry() {
        let tokens = VerifiedTokens()
        tokens.remember("t", as: Identity(userId: "u", role: .user, expiresAt: 100))
        #expect(tokens.identity(of: "t", now: 99)?.userId == "u")
        #expect(tokens.identity(of: "t", now: 100) == nil)
        #expect(tokens.identity(of: "t", now: 99) == nil, "forgotten, not only hidden")
        #expect(tokens.identity(of: "never verified", now: 0) == nil)
    }

    @Test func aTokenVerifiedBeforeIsRefusedOnceExpired() async throws {
        let verifier = try await TokenVerifier(secret: TestNode.secret, publicKeyPEM: nil)
        let token = try await TokenIssuer(secret: TestNode.secret)
            .token(userId: "brief", role: .user, tier: nil, expiresAt: Date(timeIntervalSinceNow: 1.5))
        #expect(try await verifier.verify(token).userId == "brief")
        #expect(try await verifier.verify(token).userId == "brief", "again, from memory")
        try await Task.sleep(for: .milliseconds(1_600))
        await #expect(throws: TokenVerifier.Failure.self) { try await verifier.verify(token) }
        // A forged variant of a remembered token is checked in full.
        await #expect(throws: TokenVerifier.Failure.self) { try await verifier.verify(token + "x") }
    }

    @Test func authWithoutConfiguredSecretNamesTheSettings() async throws {
        try await TestNode.with({ $0.jwtSecret = nil }) { node in
            let client = try await node.client()
            let reply = try await client.request(["type": "auth", "token": "a.b.c"])
            #expect(reply["code"] as? String == "UNAUTHORIZED")
            let message = reply["message"] as? String ?? ""
            #expect(message.contains("jwt-secret") && message.contains("jwt-public-key"))
            await client.close()
        }
    }

    @Test func subscribeRepliesSubscribedWithChannelAndId() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            let reply = try await client.request(["type": "subscribe", "channel": "market_data:AAPL", "id": 1])
            #expect(reply["type"] as? String == "subscribed")
            #expect(reply["channel"] as? String == "market_data:AAPL")
            #expect(reply["id"] as? Int == 1)
            #expect(reply["recovered"] == nil)
            await client.close()
        }
    }

    @Test func unsubscribeStopsDeliveries() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            try await client.subscribe("system_status")
            let reply = try await client.request(["type": "unsubscribe", "channel": "system_status", "id": "u"])
            #expect(reply["type"] as? String == "unsubscribed")
            #expect(reply["channel"] as? String == "system_status")
            #expect(reply["id"] as? String == "u")
            _ = try await node.node.publisher.publish(Publication(channel: "system_status", event: "status", data: "1"))
            let pong = try await client.request(["type": "ping"])
            #expect(pong["type"] as? String == "pong", "no delivery after unsubscribe, got \(pong)")
            await client.close()
        }
    }

    @Test func adminPublishReachesSubscribersAndRepliesSeq() async throws {
        try await TestNode.with { node in
            let subscriber = try await node.client()
            try await subscriber.subscribe("system_status")
            let admin = try await node.client(token: try await node.token("ops", role: .admin))
            let reply = try await admin.request([
                "type": "publish", "channel": "system_status", "event": "status", "data": ["state": "open"], "id": "p",
            ])
            #expect(reply["type"] as? String == "published")
            #expect(reply["seq"] as? Int == 1)
            #expect(reply["id"] as? String == "p")
            let message = try await subscriber.next()
            #expect(message["type"] as? String == "message")
            #expect(message["channel"] as? String == "system_status")
            #expect(message["event"] as? String == "status")
            #expect((message["data"] as? [String: Any])?["state"] as? String == "open")
            #expect(message["seq"] as? Int == 1)
            #expect((message["ts"] as? Int ?? 0) > 1_700_000_000_000)
            await subscriber.close()
            await admin.close()
        }
    }

    @Test func userPublishIsForbidden() async throws {
        try await TestNode.with { node in
            let client = try await node.client(token: try await node.token("trader"))
            let reply = try await client.request(["type": "publish", "channel": "system_status", "event": "x", "data": 1])
            #expect(reply["code"] as? String == "FORBIDDEN")
            await client.close()
        }
    }

    @Test func pingRepliesPongWithId() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            let reply = try await client.request(["type": "ping", "id": 42])
            #expect(reply["type"] as? String == "pong")
            #expect(reply["id"] as? Int == 42)
            await client.close()
        }
    }

    @Test(arguments: [
        ("not json at all", "not valid JSON"),
        ("[1,2,3]", "JSON object"),
        (#"{"type":"dance"}"#, "unknown type"),
        (#"{"channel":"system_status"}"#, "missing field 'type'"),
        (#"{"type":"subscribe"}"#, "missing field 'channel'"),
        (#"{"type":"subscribe","channel":5}"#, "field 'channel' must be a string"),
        (#"{"type":"subscribe","channel":"system_status","since":-1}"#, "field 'since'"),
        (#"{"type":"publish","channel":"admin","event":"e"}"#, "missing field 'data'"),
        (#"{"type":"ping","id":{"x":1}}"#, "field 'id'"),
    ])
    func badMessagesAreBadRequestAndKeepConnection(message: String, expected: String) async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            try await client.socket.send(message)
            let reply = try await client.next()
            #expect(reply["type"] as? String == "error")
            #expect(reply["code"] as? String == "BAD_REQUEST")
            #expect((reply["message"] as? String)?.contains(expected) == true, "\(reply)")
            #expect(try await client.request(["type": "ping"])["type"] as? String == "pong")
            await client.close()
        }
    }

    @Test func badRequestEchoesIdWhenReadable() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            let reply = try await client.request(["type": "subscribe", "id": "x9"])
            #expect(reply["code"] as? String == "BAD_REQUEST")
            #expect(reply["id"] as? String == "x9")
            await client.close()
        }
    }

    @Test func binaryFrameIsBadRequestAndKeepsConnection() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            try await client.socket.sendFrame(opcode: 0x2, payload: [0, 1, 2, 3])
            let reply = try await client.next()
            #expect(reply["code"] as? String == "BAD_REQUEST")
            #expect(try await client.request(["type": "ping"])["type"] as? String == "pong")
            await client.close()
        }
    }

    @Test func invalidUTF8IsBadRequest() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            try await client.socket.sendFrame(opcode: 0x1, payload: [0x7B, 0xFF, 0xFE, 0x7D])
            let reply = try await client.next()
            #expect(reply["code"] as? String == "BAD_REQUEST")
            #expect((reply["message"] as? String)?.contains("UTF-8") == true)
            await client.close()
        }
    }

    @Test func deeplyNestedJSONIsBadRequest() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            try await client.socket.send(String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000))
            let reply = try await client.next()
            #expect(reply["code"] as? String == "BAD_REQUEST")
            #expect(try await client.request(["type": "ping"])["type"] as? String == "pong")
            await client.close()
        }
    }

    @Test func fragmentedTextMessageIsReassembled() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            let message = Array(#"{"type":"ping","id":"frag"}"#.utf8)
            try await client.socket.sendFrame(opcode: 0x1, payload: Array(message[..<10]), fin: false)
            try await client.socket.sendFrame(opcode: 0x0, payload: Array(message[10...]), fin: true)
            let reply = try await client.next()
            #expect(reply["type"] as? String == "pong")
            #expect(reply["id"] as? String == "frag")
            await client.close()
        }
    }

    @Test func messagesOverTheRateAreRateLimited() async throws {
        // One token a minute: refill cannot blur the burst, however slow the machine.
        try await TestNode.with({
            $0.messageBurst = 3
            $0.messageRate = 1
        }) { node in
            let client = try await node.client()
            for _ in 0..<3 { #expect(try await client.request(["type": "ping"])["type"] as? String == "pong") }
            let reply = try await client.request(["type": "ping"])
            #expect(reply["code"] as? String == "RATE_LIMITED")
            await client.close()
        }
    }

    @Test func everyRateLimitedReplyCarriesItsRequestsId() async throws {
        // The issue's case: burst 5, then refusals; all ten pings sent before any reply is read.
        try await TestNode.with({
            $0.messageBurst = 5
            $0.messageRate = 30
        }) { node in
            let client = try await node.client()
            for id in 0..<10 { try await client.send(["type": "ping", "id": id]) }
            var replies: [Int: String] = [:]
            for _ in 0..<10 {
                let reply = try await client.next()
                let id = try #require(reply["id"] as? Int, "a reply without its request's id: \(reply)")
                replies[id] = (reply["type"] as? String == "pong") ? "pong" : reply["code"] as? String
            }
            #expect(replies.count == 10, "each of the ten ids answered once")
            #expect(replies.values.filter { $0 == "pong" }.count == 5)
            #expect(replies.values.filter { $0 == "RATE_LIMITED" }.count == 5)
            await client.close()
        }
    }

    @Test func messagesSentWhileAnAuthIsVerifiedWaitForItInOrder() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            let token = try await node.token("pat", tier: "premium")
            // One write, so all three reach the server together, before the token's verification has finished.
            let frames = [
                #"{"type":"auth","token":"\#(token)","id":1}"#,
                #"{"type":"subscribe","channel":"trading_signals:momentum","id":2}"#,
                #"{"type":"ping","id":3}"#,
            ].flatMap { Array(WireParser.clientFrame(opcode: 0x1, payload: Array($0.utf8)).readableBytesView) }
            try await client.socket.sendRaw(frames)
            let replies = [try await client.next(), try await client.next(), try await client.next()]
            #expect(replies.map { $0["id"] as? Int } == [1, 2, 3], "in the order sent: \(replies)")
            #expect(replies.map { $0["type"] as? String } == ["authenticated", "subscribed", "pong"],
                "the subscribe is judged with the new identity (premium), not the anonymous one")
            await client.close()
        }
    }

    @Test func channelsNamedInTheUpgradeAreSubscribedAfterWelcome() async throws {
        try await TestNode.with { node in
            // market_data allowed, trading_signals forbidden for an anonymous client, the last two names invalid
            // (the query is percent-decoded once: `%253A` is `%3A` in the name, not `:`).
            let client = try await node.client(
                query: "subscribe=market_data%3AAAPL,system_status,trading_signals:x,bad!name,market_data%253AB")
            var replies: [[String: Any]] = []
            for _ in 0..<5 { replies.append(try await client.next()) }
            #expect(replies[0]["type"] as? String == "subscribed" && replies[0]["channel"] as? String == "market_data:AAPL")
            #expect(replies[1]["type"] as? String == "subscribed" && replies[1]["channel"] as? String == "system_status")
            #expect(replies[2]["code"] as? String == "FORBIDDEN", "the same checks as a subscribe message: \(replies[2])")
            #expect(replies[3]["code"] as? String == "BAD_REQUEST")
            #expect(replies[4]["code"] as? String == "BAD_REQUEST", "decoded twice: \(replies[4])")
            _ = try await node.node.publisher.publish(Publication(channel: "system_status", event: "s", data: "1"))
            #expect(try await client.next()["channel"] as? String == "system_status", "subscribed for real")
            await client.close()
        }
    }

    @Test func upgradeSubscriptionsCountTowardTheLimit() async throws {
        try await TestNode.with({ $0.maxSubscriptions = 1 }) { node in
            let client = try await node.client(query: "subscribe=system_status,market_data:A,market_data:B")
            #expect(try await client.next()["type"] as? String == "subscribed")
            #expect(try await client.next()["code"] as? String == "SUBSCRIPTION_LIMIT")
            #expect(try await client.request(["type": "ping"])["type"] as? String == "pong", "nothing more: the list is cut past the limit")
            await client.close()
        }
    }

    @Test func subscriptionsBeyondTheLimitAreRefused() async throws {
        try await TestNode.with({ $0.maxSubscriptions = 2 }) { node in
            let client = try await node.client()
            try await client.subscribe("market_data:A")
            try await client.subscribe("market_data:B")
            // Subscribing again to a held channel is not a new subscription.
            try await client.subscribe("market_data:B")
            let reply = try await client.request(["type": "subscribe", "channel": "market_data:C", "id": 3])
            #expect(reply["code"] as? String == "SUBSCRIPTION_LIMIT")
            #expect(reply["id"] as? Int == 3)
            await client.close()
        }
    }
}

extension TestNode {
    /// A token whose `exp` is in the past, signed with the test secret.
    static func expiredToken() async throws -> String {
        try await TokenIssuer(secret: secret).token(userId: "late", role: .user, tier: nil, expiresAt: Date(timeIntervalSinceNow: -60))
    }
}
