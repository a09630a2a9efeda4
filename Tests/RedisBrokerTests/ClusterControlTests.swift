import NIOCore
import NIOPosix
import RedisClient
import RedisTestSupport
import Testing

@testable import RedisBroker

/// Cluster control: commands reach every node; blocks are stored for nodes that start later.
@Suite struct ClusterControlTests {
    let loop = MultiThreadedEventLoopGroup.singleton.next()

    @Test func commandsRoundTripAndForeignMessagesAreRefused() {
        let commands: [ClusterControl.Command] = [
            .disconnectConnection(id: "k3j", reason: "bye"), .disconnectUser(id: "alice", reason: "ban"),
            .disconnectIP("203.0.113.9", reason: "abuse"), .block(ip: "203.0.113.9", seconds: 60, reason: "abuse\nsecond line"),
        ]
        for command in commands {
            let decoded = ClusterControl.decode(ByteBuffer(string: ClusterControl.encode(command, origin: "node-a")))
            #expect(decoded?.origin == "node-a")
            if case .block(let ip, let seconds, let reason)? = decoded?.command {
                #expect(ip == "203.0.113.9" && seconds == 60 && reason == "abuse second line", "newlines cannot break the framing")
            } else {
                #expect(decoded?.command == command)
            }
        }
        #expect(ClusterControl.decode(ByteBuffer(string: "node\nexplode\nx\ny")) == nil)
        #expect(ClusterControl.decode(ByteBuffer(string: "node\nblock\nip\n-5\nr")) == nil)
        #expect(ClusterControl.decode(ByteBuffer(string: "garbage")) == nil)
    }

    @Test func everyNodeHearsACommandAndALateNodeLoadsTheBlocks() async throws {
        try await RedisServer.with { server in
            let control = ClusterControl(prefix: "t:")
            let (heard, hear) = AsyncStream.makeStream(of: (String, ClusterControl.Command).self)
            let listener = try await RedisSubscription.connect(to: server.url, on: loop) { message in
                if let decoded = ClusterControl.decode(message.payload) { hear.yield(decoded) }
            }
            try await listener.subscribe([control.channel])
            let redis = try await RedisConnection.connect(to: server.url, on: loop)
            try await control.send(.disconnectUser(id: "alice", reason: "ban"), origin: "node-a", on: redis)
            try await control.block("203.0.113.9", for: 60, reason: "abuse", origin: "node-a", on: redis)
            var iterator = heard.makeAsyncIterator()
            let first = try #require(await iterator.next())
            #expect(first.0 == "node-a" && first.1 == .disconnectUser(id: "alice", reason: "ban"))
            let second = try #require(await iterator.next())
            #expect(second.1 == .block(ip: "203.0.113.9", seconds: 60, reason: "abuse"))
            // A node that starts now finds the block and how long it has left.
            let stored = try await control.storedBlocks(on: redis)
            #expect(stored.count == 1 && stored[0].ip == "203.0.113.9" && stored[0].reason == "abuse")
            #expect((59...60).contains(stored[0].seconds))
            await listener.close()
            await redis.close()
        }
    }
}
