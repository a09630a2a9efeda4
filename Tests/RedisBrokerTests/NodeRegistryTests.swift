import NIOPosix
import RedisClient
import RedisTestSupport
import Testing

@testable import RedisBroker

/// The node registry: live nodes listed with their figures; a node that stops announcing drops out.
@Suite struct NodeRegistryTests {
    @Test func liveNodesAreListedAndAStoppedOneDropsOut() async throws {
        try await RedisServer.with { server in
            let redis = try await RedisConnection.connect(to: server.url, on: MultiThreadedEventLoopGroup.singleton.next())
            let steady = NodeRegistry(prefix: "t:")
            try await steady.announce("a", figures: #"{"connections":3}"#, on: redis)
            try await steady.announce("b", figures: #"{"connections":5}"#, on: redis)
            try await steady.announce("c", figures: #"{"connections":7}"#, on: redis)
            _ = try await redis.send(["SET", "t:other", "x"])  // not a node
            #expect(try await steady.liveNodes(on: redis) == ["a": #"{"connections":3}"#, "b": #"{"connections":5}"#, "c": #"{"connections":7}"#])
            // b's last announcement, then it stops: its entry outlives it by its expiry only (time passing is what is
            // tested; only "at least 300 ms passed" matters, so a slow machine cannot make this fail).
            try await NodeRegistry(prefix: "t:", ttlMilliseconds: 300).announce("b", figures: "{}", on: redis)
            try await Task.sleep(for: .milliseconds(600))
            #expect(try await steady.liveNodes(on: redis).keys.sorted() == ["a", "c"])
            try await steady.leave("c", on: redis)
            #expect(try await steady.liveNodes(on: redis).keys.sorted() == ["a"], "a clean shutdown leaves at once")
            await redis.close()
        }
    }

    @Test func manyNodesAreFoundAcrossScanBatches() async throws {
        try await RedisServer.with { server in
            let redis = try await RedisConnection.connect(to: server.url, on: MultiThreadedEventLoopGroup.singleton.next())
            let registry = NodeRegistry(prefix: "t:")
            _ = try await redis.pipeline((0..<1_200).map { ["SET", RESPArgument("t:node:n\($0)"), "{}", "PX", "60000"] })
            #expect(try await registry.liveNodes(on: redis).count == 1_200)
            await redis.close()
        }
    }
}
