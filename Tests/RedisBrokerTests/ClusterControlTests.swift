import NIOCore
import NIOPosix
import RedisClient
import RedisTestSupport
import SwitchboardCore
import Testing

@testable import RedisBroker

/// Cluster control: commands reach every node; blocks are stored for nodes that start later.
@Suite struct ClusterControlTests {
    let loop = MultiThreadedEventLoopGroup.singleton.next()

    @Test func messagesRoundTripAndForeignOnesAreRefused() {
        let commands: [ClusterCommand] = [
            .disconnectConnection(id: "k3j", reason: "bye"), .disconnectUser(id: "alice", reason: "ban"),
            .disconnectIP("203.0.113.9", reason: "abuse"), .block(ip: "203.0.113.9", seconds: 60, reason: "abuse\nsecond line"),
        ]
        for command in commands {
            let decoded = ClusterControl.decode(ByteBuffer(string: ClusterControl.encode(.command(command, origin: "node-a", request: "r1"))))
            guard case .command(let received, let origin, let request)? = decoded else {
                Issue.record("\(command) did not round-trip")
                continue
            }
            #expect(origin == "node-a" && request == "r1")
            if case .block(let ip, let seconds, let reason) = received {
                #expect(ip == "203.0.113.9" && seconds == 60 && reason == "abuse second line", "newlines cannot break the framing")
            } else {
                #expect(received == command)
            }
        }
        let reply = ClusterControl.Message.reply(request: "r1", responder: "node-b", closed: 3)
        #expect(ClusterControl.decode(ByteBuffer(string: ClusterControl.encode(reply))) == reply)
        #expect(ClusterControl.decode(ByteBuffer(string: "node\nr\nexplode\nx\ny")) == nil)
        #expect(ClusterControl.decode(ByteBuffer(string: "node\nr\nblock\nip\n-5\nr")) == nil)
        #expect(ClusterControl.decode(ByteBuffer(string: "node\nr\nreply\n-1")) == nil)
        #expect(ClusterControl.decode(ByteBuffer(string: "garbage")) == nil)
    }

    @Test func everyNodeHearsACommandAndALateNodeLoadsTheBlocks() async throws {
        try await RedisServer.with { server in
            let control = ClusterControl(prefix: "t:")
            let (heard, hear) = AsyncStream.makeStream(of: ClusterControl.Message.self)
            let listener = try await RedisSubscription.connect(to: server.url, on: loop) { message in
                if let decoded = ClusterControl.decode(message.payload) { hear.yield(decoded) }
            }
            try await listener.subscribe([control.channel, control.replyChannel(of: "node-a")])
            let redis = try await RedisConnection.connect(to: server.url, on: loop)
            try await control.send(.disconnectUser(id: "alice", reason: "ban"), origin: "node-a", request: "1", on: redis)
            try await control.send(.block(ip: "203.0.113.9", seconds: 60, reason: "abuse"), origin: "node-a", request: "2", on: redis)
            try await control.reply(to: "2", of: "node-a", closed: 4, responder: "node-b", on: redis)
            var iterator = heard.makeAsyncIterator()
            #expect(await iterator.next() == .command(.disconnectUser(id: "alice", reason: "ban"), origin: "node-a", request: "1"))
            #expect(await iterator.next() == .command(.block(ip: "203.0.113.9", seconds: 60, reason: "abuse"), origin: "node-a", request: "2"))
            #expect(await iterator.next() == .reply(request: "2", responder: "node-b", closed: 4))
            // A node that starts now finds the block and how long it has left.
            let stored = try await control.storedBlocks(on: redis)
            #expect(stored.count == 1 && stored[0].ip == "203.0.113.9" && stored[0].reason == "abuse")
            #expect((59...60).contains(stored[0].seconds))
            await listener.close()
            await redis.close()
        }
    }

    @Test func numbersFromRedisAreRangeCheckedBeforeAnyArithmetic() async throws {
        let hostile = [
            "node-b\nr1\nreply\n9223372036854775807", "node-b\nr1\nreply\n-1", "node-b\nr1\nreply\n1e3",
            "node-b\nr1\nblock\n10.0.0.1\n9223372036854775807\nx", "node-b\nr1\nblock\n10.0.0.1\n0\nx",
        ]
        for text in hostile { #expect(ClusterControl.decode(ByteBuffer(string: text)) == nil, "\(text)") }
        #expect(ClusterControl.decode(ByteBuffer(string: "node-b\nr1\nreply\n3")) == .reply(request: "r1", responder: "node-b", closed: 3))
        try await RedisServer.with { server in
            let control = ClusterControl(prefix: "n:")
            let redis = try await RedisConnection.connect(to: server.url, on: loop)
            // A block whose TTL no node set (an operator's PERSIST, a corrupt key): skipped, not trapped on.
            _ = try await redis.send(["SET", "n:block:10.0.0.9", "x"])
            _ = try await redis.send(["SET", "n:block:10.0.0.8", "y", "EX", "60"])
            let stored = try await control.storedBlocks(on: redis)
            #expect(stored.map(\.ip) == ["10.0.0.8"])
            await redis.close()
        }
    }
}
