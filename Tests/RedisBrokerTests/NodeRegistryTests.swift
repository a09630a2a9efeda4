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
            let stopping = NodeRegistry(prefix: "t:", ttlMilliseconds: 300)
            try await steady.announce("a", figures: #"{"connections":3}"#, on: redis)
            try await stopping.announce("b", figures: #"{"connections":5}"#, on: redis)
            try await steady.announce("c", figures: #"{"connections":7}"#, on: redis)
            _ = try await redis.send(["SET", "t:other", "x"])  // not a node
            #expect(try await steady.liveNodes(on: redis) == ["a": #"{"connections":3}"#, "b": #"{"connections":5}"#, "c": #"{"connections":7}"#])
            try await Task.sleep(for: .milliseconds(600))  // b stops announcing: time passing is what is tested
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
