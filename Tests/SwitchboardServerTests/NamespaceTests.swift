import Foundation
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// SPEC §4's namespace rules, subscribed to over a live connection.
@Suite struct NamespaceTests {
    /// Subscribes `client` to `channel` and returns the reply's type or error code.
    private func outcome(_ client: TestClient, _ channel: String) async throws -> String {
        let reply = try await client.request(["type": "subscribe", "channel": channel])
        return reply["type"] as? String == "subscribed" ? "subscribed" : (reply["code"] as? String ?? "\(reply)")
    }

    @Test func marketDataIsOpenToAnonymous() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            #expect(try await outcome(client, "market_data:AAPL") == "subscribed")
            await client.close()
        }
    }

    @Test func marketDataWithoutTopicIsBadRequest() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            #expect(try await outcome(client, "market_data") == "BAD_REQUEST")
            await client.close()
        }
    }

    @Test func tradingSignalsNeedPremiumOrEnterpriseUser() async throws {
        try await TestNode.with { node in
            let anonymous = try await node.client()
            #expect(try await outcome(anonymous, "trading_signals:momentum") == "FORBIDDEN")
            let free = try await node.client(token: try await node.token("f", tier: "free"))
            #expect(try await outcome(free, "trading_signals:momentum") == "FORBIDDEN")
            let premium = try await node.client(token: try await node.token("p", tier: "premium"))
            #expect(try await outcome(premium, "trading_signals:momentum") == "subscribed")
            let enterprise = try await node.client(token: try await node.token("e", tier: "enterprise"))
            #expect(try await outcome(enterprise, "trading_signals:momentum") == "subscribed")
            let admin = try await node.client(token: try await node.token("a", role: .admin))
            #expect(try await outcome(admin, "trading_signals:momentum") == "subscribed")
            for client in [anonymous, free, premium, enterprise, admin] { await client.close() }
        }
    }

    @Test func systemStatusIsOpenAndTakesNoTopic() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            #expect(try await outcome(client, "system_status") == "subscribed")
            #expect(try await outcome(client, "system_status:eu") == "BAD_REQUEST")
            await client.close()
        }
    }

    @Test func userChannelIsOnlyForItsOwnerAndAdmins() async throws {
        try await TestNode.with { node in
            let alice = try await node.client(token: try await node.token("alice"))
            #expect(try await outcome(alice, "user:alice") == "subscribed")
            #expect(try await outcome(alice, "user:bob") == "FORBIDDEN")
            let anonymous = try await node.client()
            #expect(try await outcome(anonymous, "user:alice") == "FORBIDDEN")
            let admin = try await node.client(token: try await node.token("ops", role: .admin))
            #expect(try await outcome(admin, "user:alice") == "subscribed")
            for client in [alice, anonymous, admin] { await client.close() }
        }
    }

    @Test func reauthenticatingAsAnotherUserDropsTheOldUsersChannel() async throws {
        try await TestNode.with { node in
            let client = try await node.client(token: try await node.token("alice"))
            try await client.subscribe("user:alice")
            try await client.send(["type": "auth", "token": try await node.token("bob")])
            let revoked = try await client.next()
            #expect(revoked["type"] as? String == "unsubscribed")
            #expect(revoked["channel"] as? String == "user:alice")
            #expect(try await client.next()["type"] as? String == "authenticated")
            await client.close()
        }
    }

    @Test func adminNamespaceNeedsAdmin() async throws {
        try await TestNode.with { node in
            let user = try await node.client(token: try await node.token("u"))
            #expect(try await outcome(user, "admin") == "FORBIDDEN")
            let admin = try await node.client(token: try await node.token("a", role: .admin))
            #expect(try await outcome(admin, "admin") == "subscribed")
            await user.close()
            await admin.close()
        }
    }

    @Test func unknownNamespaceIsUnknownChannel() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            #expect(try await outcome(client, "crypto:BTC") == "UNKNOWN_CHANNEL")
            await client.close()
        }
    }

    @Test(arguments: ["market_data:A B", "market_data:a:b", "", String(repeating: "x", count: 129), "market_data:é"])
    func invalidChannelNameIsBadRequest(name: String) async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            #expect(try await outcome(client, name) == "BAD_REQUEST")
            await client.close()
        }
    }

    @Test func subscribingTwiceIsIdempotent() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            try await client.subscribe("system_status")
            try await client.subscribe("system_status")
            _ = try await node.node.publisher.publish(Publication(channel: "system_status", event: "s", data: "1"))
            #expect(try await client.next()["seq"] as? Int == 1)
            #expect(try await client.request(["type": "ping"])["type"] as? String == "pong", "delivered once only")
            await client.close()
        }
    }

    @Test func emptyChannelsAreFreed() async throws {
        try await TestNode.with { node in
            let client = try await node.client(token: try await node.token("a", role: .admin))
            try await client.subscribe("admin")
            #expect(node.node.hub.channelCount == 1)
            _ = try await client.request(["type": "unsubscribe", "channel": "admin"])
            #expect(node.node.hub.channelCount == 0)
            try await client.subscribe("admin")
            await client.close()
            try await waitUntil { node.node.hub.channelCount == 0 }
        }
    }

    @Test func namespacesComeFromConfiguration() async throws {
        try await TestNode.with({ $0.namespaces = [Namespace(name: "news", topic: .optional)] }) { node in
            let client = try await node.client()
            #expect(try await outcome(client, "news:fx") == "subscribed")
            #expect(try await outcome(client, "market_data:AAPL") == "UNKNOWN_CHANNEL")
            await client.close()
        }
    }
}
