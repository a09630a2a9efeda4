import Foundation
import NIOCore
import NIOPosix
import RedisBroker
import RedisClient
import RedisTestSupport
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// SPEC §8's outage behaviour with a real Redis that hangs, dies, comes back empty, or cuts a node's pub/sub
/// connection.
@Suite struct ClusterOutageTests {
    /// Two nodes with one subscriber of `channel` each.
    static func withSubscribedPair(
        _ channel: String, _ body: (RedisServer, [TestNode], [TestClient]) async throws -> Void
    ) async throws {
        try await ClusterTests.withCluster(nodes: 2) { nodes, redis in
            var clients: [TestClient] = []
            for node in nodes {
                let client = try await node.client()
                try await client.subscribe(channel)
                clients.append(client)
            }
            try await body(redis, nodes, clients)
            for client in clients { await client.close() }
        }
    }

    static func broker(of node: TestNode) throws -> RedisBroker {
        try #require(node.node.publisher.broker as? RedisBroker)
    }

    @Test func aHungRedisDegradesTheNodeWhichKeepsServingItsClientsAndResumesWithoutGoingBack() async throws {
        try await Self.withSubscribedPair("feed:hang") { redis, nodes, clients in
            let (first, second) = (nodes[0], nodes[1])
            _ = try await first.node.publisher.publish(Publication(channel: "feed:hang", event: "e", data: "1"))
            #expect(try await ClusterTests.receive(1, on: clients[0]).map(\.seq) == [1])
            #expect(try await ClusterTests.receive(1, on: clients[1]).map(\.seq) == [1])
            redis.pause()
            try await eventually("the node notices the hung Redis") { try await first.healthStatus() == "degraded" }
            let health = try await first.request("GET", "/api/v1/websocket/health")
            #expect(health.status == 200 && (health.json["checks"] as? [String: Any])?["redis"] as? String != "ok", "\(health.body)")
            // Local publishes still reach local subscribers, numbered on from what the node saw.
            let local = try await first.node.publisher.publish(Publication(channel: "feed:hang", event: "e", data: "2"))
            #expect(local.seq == 2)
            #expect(try await ClusterTests.receive(1, on: clients[0]).map(\.seq) == [2])
            #expect(try Self.broker(of: first).linkStatus.notForwarded == 1)
            redis.resume()
            try await eventually("both nodes reconnect by themselves") {
                let firstStatus = try await first.healthStatus()
                let secondStatus = try await second.healthStatus()
                return firstStatus == "ok" && secondStatus == "ok"
            }
            // Redis's seq was raised past the local one: the next publish, from the other node, is 3 everywhere.
            let next = try await second.node.publisher.publish(Publication(channel: "feed:hang", event: "e", data: "3"))
            #expect(next.seq == 3)
            #expect(try await ClusterTests.receive(1, on: clients[0]).map(\.seq) == [3])
            #expect(try await ClusterTests.receive(1, on: clients[1]).map(\.seq) == [3], "the other node never goes back either")
            #expect(try Self.broker(of: first).linkStatus.reconnects >= 1)
            let metrics = try await first.request("GET", "/metrics").body
            #expect(metrics.contains("switchboard_redis_up 1") && metrics.contains("switchboard_redis_not_forwarded_total 1"), "\(metrics.prefix(300))")
        }
    }

    /// Issue 36: both nodes number a channel themselves while Redis hangs, each on a stream of its own (a new epoch),
    /// and the stream in Redis restarts when they are back. A client never gets `recovered: true` across those
    /// streams (before, both reused the cluster's epoch: node B answered `recovered` to a client that had node
    /// A's seq 4-5, and it never saw B's); within the new stream it recovers, every missed message once.
    @Test func anOutageDuringWhichBothNodesPublishedLocallyIsNeverRecoveredAcross() async throws {
        try await ClusterTests.withCluster(nodes: 2) { nodes, redis in try await Self.splitStreams(nodes, redis) }
    }

    static func splitStreams(_ nodes: [TestNode], _ redis: RedisServer) async throws {
            let channel = "trading_signals:split"
            let token = try await nodes[0].token("trader", tier: "premium")
            // The cluster's stream exists (1-3) before the clients come: each learns its epoch from `subscribed`,
            // with seq 3 replayed from the history.
            for n in 1...3 { _ = try await nodes[0].node.publisher.publish(Publication(channel: channel, event: "e", data: "\(n)")) }
            var clients: [TestClient] = []
            var epochs: [String] = []
            for node in nodes {
                let client = try await node.client(token: token)
                let reply = try await client.request(["type": "subscribe", "channel": channel, "since": 2])
                #expect(reply["recovered"] as? Bool == true, "\(reply)")
                epochs.append(try #require(reply["epoch"] as? String))
                #expect(try await ClusterTests.receive(1, on: client).map(\.seq) == [3])
                clients.append(client)
            }
            #expect(epochs[0] == epochs[1], "one stream in the cluster")
            let clusterEpoch = epochs[0]

            redis.pause()
            for node in nodes { try await eventually("the node notices the hung Redis") { try await node.healthStatus() == "degraded" } }
            // Each node numbers 4 and 5 itself, with different messages.
            for (index, node) in nodes.enumerated() {
                for n in 4...5 { _ = try await node.node.publisher.publish(Publication(channel: channel, event: "e", data: "\(index * 100 + n)")) }
                #expect(try await ClusterTests.receive(2, on: clients[index]).map(\.seq) == [4, 5])
            }
            // Node 0's client moves to node 1 with what it knows (the cluster's epoch, seq 5): not recovered.
            let moved = try await nodes[1].client(token: token)
            let during = try await moved.request(["type": "subscribe", "channel": channel, "since": 5, "epoch": clusterEpoch])
            #expect(during["recovered"] as? Bool == false, "\(during)")
            #expect(during["epoch"] as? String != clusterEpoch, "node 1 numbers on a stream of its own")
            await moved.close()

            redis.resume()
            for node in nodes { try await eventually("the node reconnects") { try await node.healthStatus() == "ok" } }
            let next = try await nodes[1].node.publisher.publish(Publication(channel: channel, event: "e", data: "6"))
            let nextSeq = Int(try #require(next.seq))
            #expect(nextSeq > 5, "seq never goes back")
            for client in clients { #expect(try await ClusterTests.receive(1, on: client).map(\.seq) == [nextSeq]) }
            for node in nodes {
                let returning = try await node.client(token: token)
                let after = try await returning.request(["type": "subscribe", "channel": channel, "since": 5, "epoch": clusterEpoch])
                #expect(after["recovered"] as? Bool == false, "\(after)")
                let newEpoch = try #require(after["epoch"] as? String)
                #expect(newEpoch != clusterEpoch, "the stream in Redis restarted")
                // Within the new stream: recovered, the missed message once.
                _ = try await returning.request(["type": "unsubscribe", "channel": channel])
                let within = try await returning.request(["type": "subscribe", "channel": channel, "since": nextSeq - 1, "epoch": newEpoch])
                #expect(within["recovered"] as? Bool == true, "\(within)")
                #expect(try await returning.next()["seq"] as? Int == nextSeq, "the missed message, once")
                await returning.close()
                #expect(node.node.statistics.snapshot().streamRestarts >= 1)
            }
            for client in clients { await client.close() }
    }

    @Test func aRedisThatDiesAndComesBackEmptyNeverMakesSeqGoBackwards() async throws {
        try await Self.withSubscribedPair("feed:crash") { redis, nodes, clients in
            let (first, second) = (nodes[0], nodes[1])
            for n in 1...3 { _ = try await first.node.publisher.publish(Publication(channel: "feed:crash", event: "e", data: "\(n)")) }
            for client in clients { #expect(try await ClusterTests.receive(3, on: client).map(\.seq) == [1, 2, 3]) }
            try await redis.restart()
            try await eventually("both nodes reconnect to the new Redis") {
                let links = try [Self.broker(of: first), Self.broker(of: second)].map(\.linkStatus)
                return links.allSatisfy { $0.isUp && $0.reconnects >= 1 }
            }
            let next = try await second.node.publisher.publish(Publication(channel: "feed:crash", event: "e", data: "4"))
            #expect(next.seq == 4, "the empty Redis was raised to the nodes' seq")
            for client in clients { #expect(try await ClusterTests.receive(1, on: client).map(\.seq) == [4]) }
        }
    }

    @Test func aPubSubConnectionCutByRedisIsRepairedWithNoGap() async throws {
        try await Self.withSubscribedPair("feed:cut") { redis, nodes, clients in
            let (first, second) = (nodes[0], nodes[1])
            let admin = try await RedisConnection.connect(to: redis.url, on: MultiThreadedEventLoopGroup.singleton.next())
            var seqs: [UInt64] = []
            for n in 1...300 {
                if n == 100 {
                    let killed = try await admin.send(["CLIENT", "KILL", "TYPE", "pubsub"])
                    #expect(killed.integer == 2, "both nodes' feeds cut")
                }
                let publisher = n % 2 == 0 ? first : second
                seqs.append(try #require(try await publisher.node.publisher.publish(Publication(channel: "feed:cut", event: "e", data: "\(n)")).seq))
            }
            #expect(seqs == Array(1...300), "every publish was taken by Redis: the command connections were not cut")
            for client in clients {
                let received = try await ClusterTests.receive(300, on: client)
                #expect(received.map(\.seq) == Array(1...300) && received.map(\.data) == Array(1...300), "each once, in order, none missing")
            }
            // Cut again and publish one last message: no later one reveals the gap, so each node finds it by
            // comparing its position with Redis's when its feed is back.
            #expect(try await admin.send(["CLIENT", "KILL", "TYPE", "pubsub"]).integer == 2)
            #expect(try await first.node.publisher.publish(Publication(channel: "feed:cut", event: "e", data: "301")).seq == 301)
            for client in clients { #expect(try await ClusterTests.receive(1, on: client).map(\.seq) == [301]) }
            #expect(try Self.broker(of: first).lostMessages == 0 && Self.broker(of: second).lostMessages == 0)
            #expect(try Self.broker(of: second).linkStatus.reconnects >= 1)
            await admin.close()
        }
    }
}


extension ClusterOutageTests {
    @Test func aSilentlyDeadLinkWhileRedisIsUpIsNoticedAndMadeAgain() async throws {
        // The proxy gets a loop of its own: on NIO's singleton group, which the large fan-out suites load at the
        // same time, the first node's link did not come up within its 5 s under the full parallel suite.
        let proxyLoop = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { proxyLoop.shutdownGracefully { _ in } }
        try await RedisServer.with { redis in
            let proxy = try await SilenceableProxy(forwardingTo: redis.port, group: proxyLoop)
            // The first node reaches Redis through the proxy; the second directly.
            try await TestNode.with(ClusterTests.clusterSettings(redis) { $0.redisURL = "redis://127.0.0.1:\(proxy.port)" }) { first in
                try await first.joined()
                try await ClusterTests.withNodes(1, on: redis) { others in
                    let second = others[0]
                    let client = try await first.client()
                    try await client.subscribe("feed:quiet")
                    proxy.silenceOpenConnections()  // Redis is up; the first node's connections just carry nothing
                    for n in 1...20 {
                        _ = try await second.node.publisher.publish(Publication(channel: "feed:quiet", event: "e", data: "\(n)"))
                        try await Task.sleep(for: .milliseconds(200))
                    }
                    let received = try await ClusterTests.receive(20, on: client)
                    #expect(received.map(\.seq) == Array(1...20), "the node noticed, reconnected and repaired: \(received.map(\.seq))")
                    #expect(try Self.broker(of: first).linkStatus.reconnects >= 1)
                    await client.close()
                }
            }
            await proxy.close()
        }
    }
}
