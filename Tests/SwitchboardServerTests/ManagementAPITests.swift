import Foundation
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// SPEC §6: every endpoint for every role (anonymous, user, admin), with status, body and effect.
@Suite struct ManagementAPITests {
    /// Status for anonymous, a user and an admin calling `method path`.
    private func statuses(_ node: TestNode, _ method: String, _ path: String, body: String? = nil) async throws -> [Int] {
        let user = try await node.token("u1")
        let admin = try await node.token("ops", role: .admin)
        var result: [Int] = []
        for token in [nil, user, admin] {
            result.append(try await node.request(method, path, token: token, body: body).status)
        }
        return result
    }

    @Test func healthIsOpenToEveryone() async throws {
        try await TestNode.with { node in
            let observed1 = try await statuses(node, "GET", "/api/v1/websocket/health")
            #expect(observed1 == [200, 200, 200])
            let body = try await node.request("GET", "/api/v1/websocket/health").json
            #expect((body["checks"] as? [String: Any])?["eventLoops"] as? String == "ok")
        }
    }

    @Test func statsIsForAdmins() async throws {
        try await TestNode.with { node in
            let observed2 = try await statuses(node, "GET", "/api/v1/websocket/stats")
            #expect(observed2 == [401, 403, 200])
            let anonymous = try await node.request("GET", "/api/v1/websocket/stats")
            #expect(anonymous.errorCode == "UNAUTHORIZED")
        }
    }

    @Test func statsCountConnectionsChannelsAndMessages() async throws {
        try await TestNode.with { node in
            let viewer = try await node.client()
            try await viewer.subscribe("system_status")
            let trader = try await node.client(token: try await node.token("alice"))
            try await trader.subscribe("system_status")
            _ = try await node.node.publisher.publish(Publication(channel: "system_status", event: "s", data: "1"))
            _ = try await viewer.next()
            _ = try await trader.next()
            let stats = try await node.request("GET", "/api/v1/websocket/stats", token: try await node.token("ops", role: .admin)).json
            let connections = try #require(stats["connections"] as? [String: Any])
            #expect(connections["total"] as? Int == 2)
            #expect(connections["anonymous"] as? Int == 1)
            #expect(connections["authenticated"] as? Int == 1)
            #expect((connections["byRole"] as? [String: Any])?["user"] as? Int == 1)
            #expect(connections["uniqueUsers"] as? Int == 1)
            #expect(connections["peak"] as? Int == 2)
            #expect(connections["accepted"] as? Int == 2, "upgrades admitted")
            #expect(connections["acceptedPerSecond"] is Double)
            let listenQueue = try #require(stats["listenQueue"] as? [String: Any])
            #expect(listenQueue["overflows"] is Int && listenQueue["drops"] is Int, "this host's kernel counters: \(listenQueue)")
            #expect((stats["channels"] as? [String: Any])?["subscriptions"] as? Int == 2)
            let messages = try #require(stats["messages"] as? [String: Any])
            #expect(messages["published"] as? Int == 1)
            #expect(messages["delivered"] as? Int == 2)
            #expect(((stats["bytes"] as? [String: Any])?["out"] as? Int ?? 0) > 0)
            #expect((stats["auth"] as? [String: Any])?["successes"] as? Int == 1)
            #expect((stats["rssBytes"] as? Int ?? 0) > 0)
            #expect(stats["nodeId"] is String)
            await viewer.close()
            await trader.close()
        }
    }

    private func namespaceNames(_ node: TestNode, token: String?) async throws -> [String] {
        let body = try await node.request("GET", "/api/v1/websocket/channels", token: token).json
        return (body["namespaces"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
    }

    @Test func channelsListWhatTheCallerMaySubscribeTo() async throws {
        try await TestNode.with { node in
            let anonymous = try await namespaceNames(node, token: nil)
            let user = try await namespaceNames(node, token: try await node.token("u"))
            let premium = try await namespaceNames(node, token: try await node.token("p", tier: "premium"))
            let admin = try await namespaceNames(node, token: try await node.token("a", role: .admin))
            #expect(anonymous == ["market_data", "system_status"])
            #expect(user == ["market_data", "system_status", "user"])
            #expect(premium == ["market_data", "trading_signals", "system_status", "user"])
            #expect(admin.count == 5)
        }
    }

    @Test func adminsAlsoSeeLiveChannels() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            try await client.subscribe("market_data:AAPL")
            let user = try await node.request("GET", "/api/v1/websocket/channels", token: try await node.token("u")).json
            #expect(user["live"] == nil)
            let admin = try await node.request("GET", "/api/v1/websocket/channels", token: try await node.token("a", role: .admin)).json
            let live = admin["live"] as? [[String: Any]] ?? []
            #expect(live.contains { $0["channel"] as? String == "market_data:AAPL" && $0["subscribers"] as? Int == 1 })
            await client.close()
        }
    }

    @Test func connectionsOfAUserForAdminsAndThatUser() async throws {
        try await TestNode.with { node in
            let aliceToken = try await node.token("alice")
            let alice = try await node.client(token: aliceToken)
            try await alice.subscribe("user:alice")
            let path = "/api/v1/websocket/connections/alice"
            #expect(try await node.request("GET", path).status == 401)
            #expect(try await node.request("GET", path, token: try await node.token("bob")).status == 403)
            let own = try await node.request("GET", path, token: aliceToken)
            #expect(own.status == 200)
            let response = try await node.request("GET", path, token: try await node.token("ops", role: .admin))
            let connections = response.json["connections"] as? [[String: Any]] ?? []
            #expect(connections.count == 1)
            let first = try #require(connections.first)
            #expect(first["id"] as? String == alice.welcome["connectionId"] as? String)
            #expect(first["ip"] as? String == "127.0.0.1")
            #expect(first["role"] as? String == "user")
            #expect(first["channels"] as? [String] == ["user:alice"])
            #expect(first["messagesIn"] as? Int == 1)
            #expect((first["messagesOut"] as? Int ?? 0) >= 2)
            #expect(first["connectedAt"] is String)
            await alice.close()
        }
    }

    @Test func disconnectClosesWith4000AndTheReason() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            let id = try #require(client.welcome["connectionId"] as? String)
            let path = "/api/v1/websocket/disconnect/\(id)"
            let body = #"{"reason":"spamming"}"#
            #expect(try await node.request("POST", path, body: body).status == 401)
            #expect(try await node.request("POST", path, token: try await node.token("u"), body: body).status == 403)
            let response = try await node.request("POST", path, token: try await node.token("ops", role: .admin), body: body)
            #expect(response.status == 200)
            let frame = try #require(try await client.socket.closeFrame())
            #expect(frame.closeCode == 4000)
            #expect(frame.closeReason == "spamming")
        }
    }

    @Test func disconnectOfUnknownConnectionIs404() async throws {
        try await TestNode.with { node in
            let response = try await node.request(
                "POST", "/api/v1/websocket/disconnect/nope", token: try await node.token("ops", role: .admin))
            #expect(response.status == 404)
            #expect(response.errorCode == "NOT_FOUND")
        }
    }

    @Test func disconnectUserClosesEveryConnectionOfThatUser() async throws {
        try await TestNode.with { node in
            let token = try await node.token("alice")
            let first = try await node.client(token: token)
            let second = try await node.client(token: token)
            let bob = try await node.client(token: try await node.token("bob"))
            let observed3 = try await statuses(node, "POST", "/api/v1/websocket/disconnect/user/nobody")
            #expect(observed3 == [401, 403, 200])
            let response = try await node.request(
                "POST", "/api/v1/websocket/disconnect/user/alice", token: try await node.token("ops", role: .admin))
            #expect(response.json["disconnected"] as? Int == 2)
            #expect(try await first.closeCode() == 4000)
            #expect(try await second.closeCode() == 4000)
            #expect(try await bob.request(["type": "ping"])["type"] as? String == "pong")
            await bob.close()
        }
    }

    @Test func disconnectIPWithBlockClosesAndBlocksTheIP() async throws {
        try await TestNode.with { node in
            let victim = try await node.client(localAddress: "127.0.0.7")
            let other = try await node.client(localAddress: "127.0.0.8")
            let observed4 = try await statuses(node, "POST", "/api/v1/websocket/disconnect/ip/10.0.0.1")
            #expect(observed4 == [401, 403, 200])
            let response = try await node.request(
                "POST", "/api/v1/websocket/disconnect/ip/127.0.0.7", token: try await node.token("ops", role: .admin),
                body: #"{"blockSeconds":60}"#)
            #expect(response.json["disconnected"] as? Int == 1)
            #expect(response.json["blockedSeconds"] as? Int == 60)
            #expect(try await victim.closeCode() == 4000)
            let refusal = try #require(try await node.upgrade(localAddress: "127.0.0.7").refusal)
            #expect(refusal.status == 403)
            #expect(refusal.errorCode == "IP_BLOCKED")
            #expect(try await other.request(["type": "ping"])["type"] as? String == "pong")
            await other.close()
        }
    }

    @Test func disconnectIPRejectsABadBlockDuration() async throws {
        try await TestNode.with { node in
            let response = try await node.request(
                "POST", "/api/v1/websocket/disconnect/ip/127.0.0.9", token: try await node.token("ops", role: .admin),
                body: #"{"blockSeconds":"long"}"#)
            #expect(response.status == 400)
            #expect(response.body.contains("blockSeconds"))
        }
    }

    @Test func broadcastEndpointsAreForAdmins() async throws {
        try await TestNode.with { node in
            let body = #"{"channel":"system_status","event":"e","data":1}"#
            let observed5 = try await statuses(node, "POST", "/api/v1/websocket/broadcast", body: body)
            #expect(observed5 == [401, 403, 200])
            let observed6 = try await statuses(node, "POST", "/api/v1/websocket/broadcast/batch", body: #"{"messages":[\#(body)]}"#)
            #expect(observed6 == [401, 403, 200])
        }
    }

    @Test func wrongMethodIsJSON405WithAllow() async throws {
        try await TestNode.with { node in
            let response = try await node.request("DELETE", "/api/v1/websocket/health")
            #expect(response.status == 405)
            #expect(response.errorCode == "METHOD_NOT_ALLOWED")
            #expect(response.header("Allow") == "GET")
            let post = try await node.request("GET", "/api/v1/websocket/disconnect/user/alice")
            #expect(post.status == 405)
        }
    }

    @Test func metricsAreOpenByDefault() async throws {
        try await TestNode.with { node in
            let observed7 = try await statuses(node, "GET", "/metrics")
            #expect(observed7 == [200, 200, 200])
            let metrics = try await node.request("GET", "/metrics")
            #expect(metrics.header("Content-Type")?.hasPrefix("text/plain") == true)
            #expect(metrics.body.contains("switchboard_connections"))
        }
    }

    @Test func metricsTokenProtectsMetrics() async throws {
        let token = String(repeating: "m", count: 24)
        try await TestNode.with({ $0.metricsToken = token }) { node in
            let anonymous = try await node.request("GET", "/metrics")
            let wrong = try await node.request("GET", "/metrics", token: "wrong")
            let right = try await node.request("GET", "/metrics", token: token)
            let observed: [Int] = [anonymous.status, wrong.status, right.status]
            #expect(observed == [401, 401, 200])
        }
    }

    @Test func metricsMoveWithTraffic() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            try await client.subscribe("system_status")
            for n in 1...3 { _ = try await node.node.publisher.publish(Publication(channel: "system_status", event: "s", data: "\(n)")) }
            for _ in 1...3 { _ = try await client.next() }
            let text = try await node.request("GET", "/metrics").body
            #expect(text.contains(#"switchboard_messages_published_total{namespace="system_status"} 3"#))
            #expect(text.contains(#"switchboard_messages_delivered_total{namespace="system_status"} 3"#))
            #expect(text.contains(#"switchboard_connections{role="anonymous",transport="websocket"} 1"#))
            #expect(text.contains(#"switchboard_subscriptions{namespace="system_status"} 1"#))
            #expect(text.contains(#"switchboard_connection_attempts_total{result="accepted"} 1"#))
            #expect(text.contains("switchboard_delivery_latency_seconds_bucket"))
            #expect(!text.contains("127.0.0.1"), "labels never carry IPs")
            await client.close()
        }
    }
}
