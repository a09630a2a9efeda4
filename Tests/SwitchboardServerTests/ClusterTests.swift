import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import RedisBroker
import RedisClient
import RedisTestSupport
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// Live cluster nodes sharing one Redis of the test's own (SPEC §8): every test runs two or three real nodes in
/// `redis-url` mode, with real WebSocket clients.
@Suite struct ClusterTests {
    static let feed = Namespace(name: "feed", topic: .optional, history: 100)
    static let last = Namespace(name: "last", topic: .required, lastValue: true)
    static let tick = Namespace(name: "tick", topic: .required, throttleMs: 300, conflate: true)
    static let slow = Namespace(name: "slow", topic: .required, throttleMs: 1500, conflate: true)

    /// Settings of a cluster node on `redis`.
    static func clusterSettings(_ redis: RedisServer, _ configure: @escaping (inout Settings) -> Void = { _ in }) -> (inout Settings) -> Void {
        { settings in
            settings.namespaces += [Self.feed, Self.last, Self.tick, Self.slow]
            settings.redisURL = redis.url.description
            settings.redisPrefix = "test:"
            configure(&settings)
        }
    }

    /// Runs `body` with `count` nodes on one Redis, each joined to the cluster before it.
    static func withCluster(
        nodes count: Int = 2, _ configure: @escaping (inout Settings) -> Void = { _ in },
        _ body: ([TestNode], RedisServer) async throws -> Void
    ) async throws {
        try await RedisServer.with { redis in
            try await withNodes(count, on: redis, configure) { nodes in try await body(nodes, redis) }
        }
    }

    /// `count` nodes on `redis`, joined before `body` (nested, so each is shut down gracefully after it).
    static func withNodes(
        _ count: Int, on redis: RedisServer, _ configure: @escaping (inout Settings) -> Void = { _ in }, started: [TestNode] = [],
        _ body: ([TestNode]) async throws -> Void
    ) async throws {
        guard started.count < count else {
            try await body(started)
            return
        }
        try await TestNode.with(clusterSettings(redis, configure)) { node in
            try await node.joined()
            try await withNodes(count, on: redis, configure, started: started + [node], body)
        }
    }

    /// The `data` of the next `count` messages of `client`, with their seqs.
    static func receive(_ count: Int, on client: TestClient) async throws -> [(seq: Int, data: Int)] {
        var received: [(seq: Int, data: Int)] = []
        while received.count < count {
            let message: [String: Any]
            do {
                message = try await client.next(timeout: .seconds(10))
            } catch {
                // Say what did arrive, so a missing message can be found.
                let seqs = received.map(\.seq)
                Issue.record("after \(received.count) of \(count) messages (seqs \(seqs.prefix(5))…\(seqs.suffix(5))), none for 10 s; gaps: \(zip(seqs, seqs.dropFirst()).filter { $0.1 != $0.0 + 1 })")
                throw error
            }
            guard message["type"] as? String == "message" else { continue }
            received.append((message["seq"] as? Int ?? -1, message["data"] as? Int ?? -1))
        }
        return received
    }

    @Test func publishesThroughEitherNodeReachEveryClientOnceInOneOrder() async throws {
        try await Self.withCluster { nodes, _ in
            let (first, second) = (nodes[0], nodes[1])
            var clients: [TestClient] = []
            for node in [first, second, first, second] {
                let client = try await node.client()
                try await client.subscribe("feed:quotes")
                clients.append(client)
            }
            // 100 publishes through each node, at the same time.
            try await withThrowingTaskGroup(of: Void.self) { publishers in
                for (index, node) in [first, second].enumerated() {
                    publishers.addTask {
                        for n in 0..<100 {
                            _ = try await node.node.publisher.publish(Publication(channel: "feed:quotes", event: "q", data: "\(index * 1000 + n)"))
                        }
                    }
                }
                try await publishers.waitForAll()
            }
            var orders: [[Int]] = []
            for client in clients {
                let received = try await Self.receive(200, on: client)
                #expect(received.map(\.seq) == Array(1...200), "seqs 1...200 in order, each once, on every node")
                orders.append(received.map(\.data))
            }
            #expect(Set(orders.map { $0 }).count == 1, "every client, on either node, saw the same order")
            #expect(first.node.statistics.snapshot().published == 100 && second.node.statistics.snapshot().published == 100,
                "each node counts the publishes it accepted")
            #expect(Set(orders[0]) == Set((0..<100).map { $0 } + (0..<100).map { 1000 + $0 }), "every message, once")
            for client in clients { await client.close() }
        }
    }

    @Test func userAndGlobalTargetsAreResolvedByEachNodeForItsOwnConnections() async throws {
        try await Self.withCluster { nodes, _ in
            let (first, second) = (nodes[0], nodes[1])
            let aliceOnSecond = try await second.client(token: try await second.token("alice"))
            let bystanderOnFirst = try await first.client()
            let admin = try await first.token("ops", role: .admin)
            let toAlice = try await first.request(
                "POST", "/api/v1/websocket/broadcast", token: admin, body: #"{"userId":"alice","event":"fill","data":7}"#)
            #expect(toAlice.status == 200 && toAlice.json["seq"] as? Int == 1, "\(toAlice.body)")
            let fill = try await aliceOnSecond.next()
            #expect(fill["channel"] as? String == "user:alice" && fill["data"] as? Int == 7, "reached alice on the other node")
            // A channel publish to `user:alice` and `userId` targets share the channel's one sequence, across nodes.
            try await aliceOnSecond.subscribe("user:alice")
            _ = try await first.node.publisher.publish(Publication(channel: "user:alice", event: "note", data: "8"), to: .channel("user:alice"))
            _ = try await second.node.publisher.publish(Publication(channel: "", event: "fill", data: "9"), to: .user("alice"))
            let next = [try await aliceOnSecond.next(), try await aliceOnSecond.next()]
            #expect(next.map { $0["seq"] as? Int } == [2, 3] && next.map { $0["data"] as? Int } == [8, 9], "\(next)")
            let toAll = try await first.request("POST", "/api/v1/websocket/broadcast", token: admin, body: #"{"all":true,"event":"notice","data":1}"#)
            #expect(toAll.status == 200)
            for client in [aliceOnSecond, bystanderOnFirst] {
                let notice = try await client.next()
                #expect(notice["event"] as? String == "notice" && notice["channel"] is NSNull)
            }
            await aliceOnSecond.close()
            await bystanderOnFirst.close()
        }
    }

    @Test func aFeedConnectionCutByRedisLosesNothingThatTheHistoryHolds() async throws {
        // Messages published while a node's feed is cut reach it from the history stream once the next one arrives.
        try await RedisServer.with { redis in
            let hub = Hub(directory: ChannelDirectory(namespaces: [Self.feed]), scheduler: MultiThreadedEventLoopGroup.singleton.next())
            let recipients = NoRecipients()
            let loop = MultiThreadedEventLoopGroup.singleton.next()
            let configuration = RedisBroker.Configuration(url: redis.url, prefix: "t:", nodeId: "listener")
            let listener = RedisBroker(hub: hub, recipients: recipients, configuration: configuration, loop: loop)
            try await listener.start()
            let subscriber = Recorder()
            hub.subscribe(subscriber, to: try #require(ChannelName("feed:x")), namespace: Self.feed) { _, _ in Delivery(payload: ByteBuffer()) }
            let otherHub = Hub(directory: ChannelDirectory(namespaces: [Self.feed]), scheduler: loop)
            var publisherConfiguration = configuration
            publisherConfiguration.nodeId = "publisher"
            let publisher = RedisBroker(hub: otherHub, recipients: recipients, configuration: publisherConfiguration, loop: loop)
            try await publisher.start()
            for n in 1...3 { _ = try await publisher.publish(Publication(channel: "feed:x", event: "e", data: "\(n)"), to: .channel(Self.feed)) }
            try await waitUntil { subscriber.seqs.count == 3 }
            // Drop the listener's messages 4-6 as a cut pub/sub connection would (publish them to history only).
            let commands = try await RedisConnection.connect(to: redis.url, on: loop)
            for seq in 4...6 {
                _ = try await commands.send(["INCR", "t:seq:c:feed:x"])
                _ = try await commands.send([
                    "XADD", "t:history:c:feed:x", RESPArgument("\(seq)-0"), "f",
                    RESPArgument(MessageRecord.encode(Publication(channel: "feed:x", event: "e", data: "\(seq)"), timestampMs: 1, global: false)),
                    "t", "c",
                ])
            }
            _ = try await publisher.publish(Publication(channel: "feed:x", event: "e", data: "7"), to: .channel(Self.feed))
            try await waitUntil { subscriber.seqs.count == 7 }
            #expect(subscriber.seqs == Array(1...7), "the gap 4-6 was read from the history, in order")
            #expect(listener.lostMessages == 0)
            await commands.close()
            await publisher.stop()
            await listener.stop()
        }
    }
}

extension TestNode {
    /// Waits until this cluster node's Redis link is up.
    func joined() async throws {
        let broker = try #require(node.publisher.broker as? RedisBroker, "a cluster node")
        // The node's service group runs the broker (its link); this only waits for it.
        try await broker.waitUntilUp(timeout: .seconds(10))
    }

    /// Waits until this node has read `count` other live nodes from the registry.
    func seesPeers(_ count: Int) async throws {
        let cluster = try #require(node.cluster)
        let deadline = ContinuousClock.now + .seconds(10)
        while await cluster.peers().count != count {
            guard ContinuousClock.now < deadline else {
                Issue.record("node \(node.settings.nodeId) sees \(await cluster.peers().count) peers, not \(count)")
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// `GET /health`'s status.
    func healthStatus() async throws -> String? {
        try await request("GET", "/api/v1/websocket/health").json["status"] as? String
    }
}

/// Waits (up to `timeout`) until `condition` holds, asking it again every 50 ms.
func eventually(timeout: Duration = .seconds(15), _ what: String, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("not within \(timeout): \(what)")
            return
        }
        try await Task.sleep(for: .milliseconds(50))
    }
}

/// No connections: for a broker driven without a node.
struct NoRecipients: LocalRecipients {
    func subscribers(ofUser userId: String) -> [any Subscriber] { [] }
    var allSubscribers: [any Subscriber] { [] }
}

/// Records the seqs of the messages it is given.
final class Recorder: Subscriber, @unchecked Sendable {
    private let lock = NIOLock()
    private var received: [UInt64] = []
    var seqs: [UInt64] { lock.withLock { received } }
    func deliver(_ delivery: Delivery) {
        if delivery.isMessage { lock.withLock { received.append(delivery.seq) } }
    }
}
