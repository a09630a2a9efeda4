import Foundation
import RedisTestSupport
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// SPEC §14's server-side subscriptions: the platform's backend joins a user to a room and removes them, on every
/// node, over `/ws` and Socket.IO; the backend's word passes over the namespace rules, not over the limits.
@Suite struct ServerSubscriptionTests {
    @Test func theBackendSubscribesAndRemovesEveryConnectionOfAUserOnBothNodes() async throws {
        try await ClusterTests.withCluster(nodes: 2) { nodes, _ in
            let admin = try await nodes[0].token("ops", role: .admin)
            let onFirst = try await nodes[0].client(token: try await nodes[0].token("alice"))
            let onSecond = try await nodes[1].client(token: try await nodes[1].token("alice"))
            let bob = try await nodes[1].client(token: try await nodes[1].token("bob"))
            // A plain user may not subscribe to a premium channel by herself...
            let refused = try await onFirst.request(["type": "subscribe", "channel": "trading_signals:room42", "id": 1])
            #expect(refused["type"] as? String == "error" && refused["code"] as? String == "FORBIDDEN", "\(refused)")
            // The answer counts the nodes that reply: wait until each node has heard of the other.
            for node in nodes {
                try await eventually("node \(node.node.settings.nodeId) knows its peer") { await node.node.cluster?.peers().count == 1 }
            }
            // ... the backend's subscribe admits her, on both nodes.
            let joined = try await nodes[0].request(
                "POST", "/api/v1/websocket/subscribe", token: admin, body: #"{"userId":"alice","channel":"trading_signals:room42"}"#)
            #expect(joined.status == 200 && joined.json["connections"] as? Int == 2, "\(joined.body)")
            for client in [onFirst, onSecond] {
                let subscribed = try await client.next()
                #expect(subscribed["type"] as? String == "subscribed" && subscribed["channel"] as? String == "trading_signals:room42")
            }
            _ = try await nodes[1].node.publisher.publish(Publication(channel: "trading_signals:room42", event: "fill", data: "1"))
            for client in [onFirst, onSecond] {
                let message = try await client.next()
                #expect(message["event"] as? String == "fill" && message["data"] as? Int == 1, "\(message)")
            }
            // Removed: every connection is told why within 1 s, and gets nothing more of the channel.
            let started = ContinuousClock.now
            let left = try await nodes[1].request(
                "POST", "/api/v1/websocket/unsubscribe", token: admin,
                body: #"{"userId":"alice","channel":"trading_signals:room42","reason":"removed from room 42"}"#)
            #expect(left.status == 200 && left.json["connections"] as? Int == 2, "\(left.body)")
            for client in [onFirst, onSecond] {
                let unsubscribed = try await client.next(timeout: .seconds(1))
                #expect(unsubscribed["type"] as? String == "unsubscribed" && unsubscribed["channel"] as? String == "trading_signals:room42")
                #expect(unsubscribed["reason"] as? String == "removed from room 42")
            }
            #expect(ContinuousClock.now - started < .seconds(1))
            _ = try await nodes[0].node.publisher.publish(Publication(channel: "trading_signals:room42", event: "fill", data: "2"))
            for client in [onFirst, onSecond, bob] {
                // The next frame is the answer to a ping, not the message.
                #expect(try await client.request(["type": "ping", "id": 9])["type"] as? String == "pong")
            }
            for client in [onFirst, onSecond, bob] { await client.close() }
        }
    }

    @Test func theBackendsSubscribeChecksTheChannelAndTheLimitButNotTheRules() async throws {
        try await TestNode.with({ $0.maxSubscriptions = 1 }) { node in
            let admin = try await node.token("ops", role: .admin)
            let user = try await node.token("carol")
            for (body, code) in [
                (#"{"userId":"carol","channel":"nowhere:1"}"#, "UNKNOWN_CHANNEL"), (#"{"userId":"carol","channel":"bad name"}"#, "BAD_REQUEST"),
                (#"{"userId":"c a","channel":"system_status"}"#, "BAD_REQUEST"), (#"{"channel":"system_status"}"#, "BAD_REQUEST"),
            ] {
                let response = try await node.request("POST", "/api/v1/websocket/subscribe", token: admin, body: body)
                #expect(response.status == 400 && response.errorCode == code, "\(body): \(response.body)")
            }
            #expect(try await node.request("POST", "/api/v1/websocket/subscribe", token: user, body: #"{"userId":"carol","channel":"system_status"}"#)
                .status == 403, "admins only")
            let client = try await node.client(token: user)
            try await client.subscribe("system_status")
            let response = try await node.request(
                "POST", "/api/v1/websocket/subscribe", token: admin, body: #"{"userId":"carol","channel":"admin"}"#)
            #expect(response.status == 200 && response.json["connections"] as? Int == 1)
            let refusal = try await client.next()
            #expect(refusal["code"] as? String == "SUBSCRIPTION_LIMIT", "the limit holds: \(refusal)")
            let described = try #require(node.node.connections.connections(ofUser: "carol").first)
            #expect(try await described.describe().channels == ["system_status"])
            await client.close()
        }
    }

    @Test func aSocketIOClientIsSubscribedAndToldWhyItWasRemoved() async throws {
        try await TestNode.with { node in
            let admin = try await node.token("ops", role: .admin)
            let token = try await node.token("dave")
            let socket = try await TestWebSocket.open(port: node.port, path: "/socket.io/?EIO=4&transport=websocket")
            #expect(try await SocketIOFanoutTests.nextPacket(socket).hasPrefix("0{"))
            try await socket.send(#"40{"token":"\#(token)"}"#)
            #expect(try await SocketIOFanoutTests.nextPacket(socket).hasPrefix("40{"))
            let joined = try await node.request(
                "POST", "/api/v1/websocket/subscribe", token: admin, body: #"{"userId":"dave","channel":"system_status"}"#)
            #expect(joined.json["connections"] as? Int == 1)
            #expect(try await SocketIOFanoutTests.nextPacket(socket).hasPrefix(#"42["subscribed",{"#))
            _ = try await node.node.publisher.publish(Publication(channel: "system_status", event: "status", data: "1"))
            #expect(try await SocketIOFanoutTests.nextPacket(socket).hasPrefix(#"42["status",{"channel":"system_status","data":1,"#))
            _ = try await node.request(
                "POST", "/api/v1/websocket/unsubscribe", token: admin, body: #"{"userId":"dave","channel":"system_status","reason":"licence ended"}"#)
            let removed = try await SocketIOFanoutTests.nextPacket(socket)
            #expect(removed.hasPrefix(#"42["unsubscribed",{"#) && removed.contains(#""reason":"licence ended""#), "\(removed)")
            await socket.close()
        }
    }
}
