import Foundation
import NIOCore
import NIOPosix
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// The publish path: `POST /api/v1/websocket/broadcast`, fan-out, order, history and last value.
@Suite struct PublishTests {
    /// An HTTP publish is handled on its connection's event loop: the deliveries it queued for that loop's
    /// subscribers go out before its answer is encoded and written (they used to wait for the whole answer).
    @Test func deliveriesOnThePublishersLoopLeaveBeforeItsAnswer() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)  // the publisher and the subscriber share a loop
        try await TestNode.with(eventLoopGroup: group) { node in
            // One client thread reads both connections, so arrivals come in the order the node wrote them.
            let clientLoop = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            defer { clientLoop.shutdownGracefully { _ in } }
            let token = try await node.token("alice")
            let subscriber = try await ByteCollector.connect(port: node.port, group: clientLoop)
            try await subscriber.send(Array(DirectUpgradeTests.request("/ws?token=\(token)&subscribe=system_status").utf8))
            _ = try await subscriber.waitFor(Array(#""type":"subscribed""#.utf8))
            let admin = try await node.token("ops", role: .admin)
            let publisher = try await ByteCollector.connect(port: node.port, group: clientLoop)
            let body = #"{"channel":"system_status","event":"maintenance","data":{"in":"5m"}}"#
            try await publisher.send(Array(("POST /api/v1/websocket/broadcast HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                + "Authorization: Bearer \(admin)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)").utf8))
            let answer = Array(#""recipients":1"#.utf8)
            let message = Array(#""event":"maintenance""#.utf8)
            _ = try await publisher.waitFor(answer)
            _ = try await subscriber.waitFor(message)
            let answeredAt = try #require(publisher.arrival(of: answer))
            let deliveredAt = try #require(subscriber.arrival(of: message))
            #expect(deliveredAt < answeredAt, "the delivery came after the answer")
            await subscriber.close()
            await publisher.close()
        }
        try await group.shutdownGracefully()
    }

    @Test func broadcastToChannelReachesSubscribers() async throws {
        try await TestNode.with { node in
            let subscriber = try await node.client()
            try await subscriber.subscribe("system_status")
            let response = try await node.request(
                "POST", "/api/v1/websocket/broadcast", token: try await node.token("ops", role: .admin),
                body: #"{"channel":"system_status","event":"halt","data":{"reason":"maintenance"}}"#)
            #expect(response.status == 200)
            #expect(response.json["channel"] as? String == "system_status")
            #expect(response.json["seq"] as? Int == 1)
            #expect(response.json["recipients"] as? Int == 1)
            let message = try await subscriber.next()
            #expect(message["event"] as? String == "halt")
            #expect((message["data"] as? [String: Any])?["reason"] as? String == "maintenance")
            await subscriber.close()
        }
    }

    @Test func broadcastNeedsAnAdminToken() async throws {
        try await TestNode.with { node in
            let body = #"{"channel":"system_status","event":"e","data":1}"#
            let anonymous = try await node.request("POST", "/api/v1/websocket/broadcast", body: body)
            #expect(anonymous.status == 401)
            #expect(anonymous.errorCode == "UNAUTHORIZED")
            let user = try await node.request("POST", "/api/v1/websocket/broadcast", token: try await node.token("u"), body: body)
            #expect(user.status == 403)
            #expect(user.errorCode == "FORBIDDEN")
        }
    }

    @Test func broadcastWithoutConfiguredSecretNamesTheSettings() async throws {
        try await TestNode.with({ $0.jwtSecret = nil }) { node in
            let response = try await node.request("POST", "/api/v1/websocket/broadcast", token: "x", body: "{}")
            #expect(response.status == 401)
            let message = (response.json["error"] as? [String: Any])?["message"] as? String ?? ""
            #expect(message.contains("jwt-secret") && message.contains("jwt-public-key"))
        }
    }

    @Test(arguments: [
        (#"{"event":"e","data":1}"#, "target"),
        (#"{"channel":"system_status","data":1}"#, "event"),
        (#"{"channel":"system_status","event":"e"}"#, "data"),
        (#"{"channel":"system_status","event":"e","data":1,"all":true}"#, "target"),
        (#"{"userId":5,"event":"e","data":1}"#, "userId"),
        (#"{"channel":"system_status","event":"e","data":1,"key":5}"#, "key"),
        (#"{"channel":"bad name","event":"e","data":1}"#, "channel"),
        ("not json", "body"),
    ])
    func badBroadcastBodyIs400NamingTheField(body: String, field: String) async throws {
        try await TestNode.with { node in
            let response = try await node.request(
                "POST", "/api/v1/websocket/broadcast", token: try await node.token("ops", role: .admin), body: body)
            #expect(response.status == 400)
            #expect(response.errorCode == "BAD_REQUEST")
            let message = (response.json["error"] as? [String: Any])?["message"] as? String ?? ""
            #expect(message.contains(field), "\(message)")
        }
    }

    @Test func broadcastToUnknownNamespaceIsUnknownChannel() async throws {
        try await TestNode.with { node in
            let response = try await node.request(
                "POST", "/api/v1/websocket/broadcast", token: try await node.token("ops", role: .admin),
                body: #"{"channel":"nope:x","event":"e","data":1}"#)
            #expect(response.status == 400)
            #expect(response.errorCode == "UNKNOWN_CHANNEL")
        }
    }

    @Test func healthAnswersOk() async throws {
        try await TestNode.with { node in
            let response = try await node.request("GET", "/api/v1/websocket/health")
            #expect(response.status == 200)
            #expect(response.json["status"] as? String == "ok")
            #expect(response.json["uptimeSeconds"] is Int)
            #expect(response.json["checks"] is [String: Any])
        }
    }

    @Test func unknownRouteIsJSON404() async throws {
        try await TestNode.with { node in
            let response = try await node.request("GET", "/api/v1/nothing-here")
            #expect(response.status == 404)
            #expect(response.errorCode == "NOT_FOUND")
        }
    }

    @Test func thousandSubscribersReceiveEveryMessageOnceInOrder() async throws {
        let subscribers = 1_000
        let messages = 20
        try await TestNode.with({
            $0.maxConnectionsPerIP = 2_000
            $0.connectRatePerIP = 10_000
        }) { node in
            // Spread over four source addresses, as a real audience would be.
            let clients = try await withThrowingTaskGroup(of: TestClient.self) { group in
                for index in 0..<subscribers {
                    group.addTask {
                        let client = try await node.client(localAddress: "127.0.0.\(2 + index % 4)")
                        try await client.subscribe("system_status")
                        return client
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let admin = try await node.token("ops", role: .admin)
            for index in 1...messages {
                let response = try await node.request(
                    "POST", "/api/v1/websocket/broadcast", token: admin,
                    body: #"{"channel":"system_status","event":"status","data":{"n":\#(index)}}"#)
                #expect(response.json["recipients"] as? Int == subscribers)
            }
            let orderedClients = try await withThrowingTaskGroup(of: Bool.self) { group in
                for client in clients {
                    group.addTask {
                        var seqs: [Int] = []
                        for _ in 0..<messages {
                            let message = try await client.next(timeout: .seconds(20))
                            seqs.append(message["seq"] as? Int ?? -1)
                        }
                        // Nothing more may follow: every message exactly once.
                        let extra = try await client.request(["type": "ping"])
                        await client.close()
                        return seqs == Array(1...messages) && extra["type"] as? String == "pong"
                    }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(orderedClients == subscribers)
        }
    }

    @Test func subscribeWithSinceReplaysMissedMessages() async throws {
        try await TestNode.with { node in
            let admin = try await node.client(token: try await node.token("ops", role: .admin))
            for index in 1...5 {
                _ = try await admin.request(["type": "publish", "channel": "user:alice", "event": "fill", "data": index])
            }
            let alice = try await node.client(token: try await node.token("alice"))
            let reply = try await alice.request(["type": "subscribe", "channel": "user:alice", "since": 2])
            #expect(reply["recovered"] as? Bool == true)
            for seq in 3...5 { #expect(try await alice.next()["seq"] as? Int == seq) }
            await alice.close()
            await admin.close()
        }
    }

    @Test func subscribeWithSinceBeyondHistorySaysNotRecovered() async throws {
        try await TestNode.with({
            $0.namespaces = [Namespace(name: "user", minRole: .user, ownerOnly: true, topic: .required, history: 2)]
        }) { node in
            for index in 1...5 {
                _ = try await node.node.publisher.publish(Publication(channel: "user:alice", event: "fill", data: "\(index)"))
            }
            let alice = try await node.client(token: try await node.token("alice"))
            let reply = try await alice.request(["type": "subscribe", "channel": "user:alice", "since": 1])
            #expect(reply["recovered"] as? Bool == false)
            #expect(try await alice.request(["type": "ping"])["type"] as? String == "pong", "nothing replayed")
            await alice.close()
        }
    }

    @Test func newSubscriberGetsLastValueAfterSubscribed() async throws {
        try await TestNode.with { node in
            _ = try await node.node.publisher.publish(Publication(channel: "system_status", event: "status", data: #""open""#))
            _ = try await node.node.publisher.publish(Publication(channel: "system_status", event: "status", data: #""halted""#))
            let client = try await node.client()
            try await client.subscribe("system_status")
            let last = try await client.next()
            #expect(last["data"] as? String == "halted")
            #expect(last["seq"] as? Int == 2)
            await client.close()
        }
    }
}
