import NIOCore
import NIOPosix
import RedisTestSupport
import Testing

@testable import RedisClient

/// The client against a real `redis-server` of the test's own.
@Suite struct RedisConnectionTests {
    let loop = MultiThreadedEventLoopGroup.singleton.next()

    @Test func commandsAndPipelinesGetTheirRepliesInOrder() async throws {
        try await RedisServer.with { server in
            let redis = try await RedisConnection.connect(to: server.url, on: loop)
            #expect(try await redis.send(["SET", "k", "v"]) == .simpleString("OK"))
            #expect(try await redis.send(["GET", "k"]) == .bulk("v"))
            #expect(try await redis.send(["GET", "missing"]).isNull)
            let replies = try await redis.pipeline((1...1000).map { _ in ["INCR", "n"] })
            #expect(replies.compactMap(\.integer) == (1...1000).map(Int64.init), "1,000 commands in one write, replies in order")
            await #expect(throws: RedisClientError.self) { try await redis.send(["INCR", "k"]) }
            #expect(try await redis.send(["PING"]) == .simpleString("PONG"), "an error reply leaves the connection usable")
            // Concurrent callers on one connection each get their own reply.
            let values = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
                for index in 0..<200 {
                    group.addTask { (index, try await redis.send(["ECHO", RESPArgument("\(index)")]).string) }
                }
                return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
            }
            #expect(values.count == 200 && values.allSatisfy { "\($0.key)" == $0.value })
            await redis.close()
        }
    }

    @Test func passwordAndDatabaseComeFromTheURL() async throws {
        try await RedisServer.with(arguments: ["--requirepass", "s3cret"]) { server in
            var url = server.url
            url.password = "s3cret"
            url.database = 2
            let redis = try await RedisConnection.connect(to: url, on: loop)
            _ = try await redis.send(["SET", "in-two", "yes"])
            #expect(try await redis.send(["SELECT", "2"]) == .simpleString("OK"))
            #expect(try await redis.send(["GET", "in-two"]) == .bulk("yes"))
            #expect(try await redis.send(["SELECT", "0"]) == .simpleString("OK"))
            #expect(try await redis.send(["GET", "in-two"]).isNull, "the key went to database 2")
            await redis.close()
            url.password = "wrong"
            await #expect(throws: RedisClientError.self) { _ = try await RedisConnection.connect(to: url, on: loop) }
        }
    }

    @Test func aHungServerTimesCommandsOutAndClosesTheConnection() async throws {
        try await RedisServer.with { server in
            let redis = try await RedisConnection.connect(
                to: server.url, configuration: .init(commandTimeout: .milliseconds(300)), on: loop)
            server.pause()
            let started = ContinuousClock.now
            await #expect(throws: RedisClientError.timedOut) { try await redis.send(["PING"]) }
            #expect(ContinuousClock.now - started < .seconds(2))
            try await redis.closeFuture.get()
            server.resume()
            await #expect(throws: RedisClientError.connectionClosed) { try await redis.send(["PING"]) }
        }
    }

    @Test func scriptsRunBySHAAndAreSentAgainAfterAFlush() async throws {
        try await RedisServer.with { server in
            let redis = try await RedisConnection.connect(to: server.url, on: loop)
            let script = RedisScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")
            #expect(script.sha1.count == 40)
            #expect(try await redis.run(script, keys: ["counter"], arguments: ["5"]) == .integer(5), "unknown at first: EVAL")
            #expect(try await redis.send(["SCRIPT", "EXISTS", RESPArgument(script.sha1)]) == .array([.integer(1)]))
            #expect(try await redis.run(script, keys: ["counter"], arguments: ["5"]) == .integer(10))
            _ = try await redis.send(["SCRIPT", "FLUSH"])  // as after a restart
            let batch = try await redis.run(Array(repeating: (script, ["counter"], ["1"]), count: 3))
            #expect(batch.map { try? $0.get() } == [.integer(11), .integer(12), .integer(13)], "NOSCRIPT: sent again, in order")
            let failing = RedisScript("return redis.error_reply('nope')")
            await #expect(throws: RedisClientError.self) { try await redis.run(failing) }
            await redis.close()
        }
    }

    @Test func subscribersGetMessagesInOrderAndNoticeTheirConnectionCut() async throws {
        try await RedisServer.with { server in
            let (messages, received) = AsyncStream.makeStream(of: RedisMessage.self)
            let subscription = try await RedisSubscription.connect(to: server.url, on: loop) { received.yield($0) }
            try await subscription.subscribe(["a", "b"])
            try await subscription.psubscribe(["p:*"])
            let publisher = try await RedisConnection.connect(to: server.url, on: loop)
            _ = try await publisher.pipeline((1...100).map { ["PUBLISH", "a", RESPArgument("\($0)")] } + [["PUBLISH", "p:x", "pattern"]])
            var iterator = messages.makeAsyncIterator()
            var seen: [String] = []
            for _ in 1...100 { seen.append(String(buffer: try #require(await iterator.next()).payload)) }
            #expect(seen == (1...100).map(String.init))
            let matched = try #require(await iterator.next())
            #expect(matched.channel == "p:x" && matched.pattern == "p:*")
            try await subscription.ping()  // the liveness probe: a pong comes back on a live subscription
            // Redis cuts the subscriber off (as an operator, or its output-buffer limit, would).
            _ = try await publisher.send(["CLIENT", "KILL", "TYPE", "pubsub"])
            try await subscription.closeFuture.get()
            await #expect(throws: RedisClientError.self) { try await subscription.ping() }
            await publisher.close()
        }
    }

    @Test func backoffGrowsWithJitterUpToItsMaximum() {
        var backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(1))
        var generator = SystemRandomNumberGenerator()
        let delays = (0..<8).map { _ in backoff.next(using: &generator) }
        for (index, delay) in delays.enumerated() {
            let step = min(Duration.milliseconds(100) * (1 << index), .seconds(1))
            #expect(delay >= step / 2 && delay <= step, "attempt \(index): \(delay) within [\(step / 2), \(step)]")
        }
        backoff.reset()
        #expect(backoff.next(using: &generator) <= .milliseconds(100))
    }
}
