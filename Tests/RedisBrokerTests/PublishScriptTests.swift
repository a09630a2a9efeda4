import NIOCore
import NIOPosix
import RedisClient
import RedisTestSupport
import SwitchboardCore
import Testing

@testable import RedisBroker

/// Cluster mode's publish script against a real Redis: one `seq` order per channel whichever connection
/// (node) published, every message in the feed exactly once, the history stream holding the last N frames.
@Suite struct PublishScriptTests {
    let loop = MultiThreadedEventLoopGroup.singleton.next()

    private func frame(_ channel: String, _ text: String) -> ByteBuffer {
        MessageRecord.encode(Publication(channel: channel, event: "e", data: #""\#(text)""#), timestampMs: 1, global: false)
    }

    @Test func concurrentPublishersOnTwoConnectionsGetOneOrderAndTheFeedCarriesEachOnce() async throws {
        try await RedisServer.with { server in
            let keys = PublishScript.Keys(prefix: "test:", channel: "market_data:AAPL")
            let (feed, received) = AsyncStream.makeStream(of: RedisMessage.self)
            let subscription = try await RedisSubscription.connect(to: server.url, on: loop) { received.yield($0) }
            try await subscription.subscribe([keys.feed])
            let nodes = [try await RedisConnection.connect(to: server.url, on: loop), try await RedisConnection.connect(to: server.url, on: loop)]
            // Each "node" publishes 500 messages in batches of 50 (one pipelined write each), both at once.
            let accepted = try await withThrowingTaskGroup(of: [(UInt64, String)].self) { group in
                for (index, node) in nodes.enumerated() {
                    group.addTask {
                        var seqs: [(UInt64, String)] = []
                        for batch in 0..<10 {
                            let texts = (0..<50).map { "n\(index)-\(batch * 50 + $0)" }
                            let results = try await PublishScript.publish(
                                texts.map { (frame("market_data:AAPL", $0), keys, stream(history: 100), .channel) }, on: node)
                            for (text, result) in zip(texts, results) { seqs.append((try result.get(), text)) }
                        }
                        return seqs
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(Set(accepted.map(\.0)) == Set(1...1000), "1,000 publishes, seqs 1...1000, none given twice")
            var iterator = feed.makeAsyncIterator()
            var delivered: [(UInt64, String)] = []
            var epochs: Set<String> = []
            for _ in 1...1000 {
                let message = try #require(await iterator.next())
                let parsed = try #require(PublishScript.parseFeedMessage(message.payload))
                #expect(parsed.tag == .channel)
                epochs.insert(parsed.epoch)
                let decoded = try #require(MessageRecord.decode(parsed.record, seq: parsed.seq))
                #expect(decoded.channel == "market_data:AAPL" && decoded.event == "e" && decoded.timestampMs == 1)
                delivered.append((parsed.seq, String(buffer: decoded.data)))
            }
            #expect(delivered.map(\.0) == Array(1...1000), "the feed carries one order, each message once")
            #expect(epochs.count == 1, "one stream, one epoch, whichever node offered it")
            let bySeq = Dictionary(uniqueKeysWithValues: accepted)
            #expect(delivered.allSatisfy { seq, data in data == #""\#(bySeq[seq] ?? "?")""# },
                "each record is the message that got that seq")
            // History: the last 100 frames, by seq.
            let history = try #require(try await nodes[0].send(["XRANGE", RESPArgument(keys.history), "-", "+"]).array)
            #expect(history.count == 100)
            #expect(history.first?.array?.first?.string == "901-0" && history.last?.array?.first?.string == "1000-0")
            for node in nodes { await node.close() }
            await subscription.close()
        }
    }

    @Test func aChannelWithoutHistoryKeepsNoStreamAndSeqsSurviveAScriptFlush() async throws {
        try await RedisServer.with { server in
            let keys = PublishScript.Keys(prefix: "p:", channel: "system_status")
            let redis = try await RedisConnection.connect(to: server.url, on: loop)
            let first = try await PublishScript.publish([(frame("system_status", "a"), keys, stream(history: 0), .channel)], on: redis)
            #expect(try first[0].get() == 1)
            #expect(try await redis.send(["EXISTS", RESPArgument(keys.history)]) == .integer(0))
            _ = try await redis.send(["SCRIPT", "FLUSH"])  // as after a Redis restart that kept its data
            let second = try await PublishScript.publish([(frame("system_status", "b"), keys, stream(history: 0), .channel)], on: redis)
            #expect(try second[0].get() == 2, "seq goes on; the script is sent again on NOSCRIPT")
            await redis.close()
        }
    }

    @Test func everyKeyOfAChannelExpiresAfterItsLastPublishAndTheNextPublishStartsANewEpoch() async throws {
        try await RedisServer.with { server in
            let keys = PublishScript.Keys(prefix: "x:", channel: "market_data:T")
            let redis = try await RedisConnection.connect(to: server.url, on: loop)
            let (feed, received) = AsyncStream.makeStream(of: RedisMessage.self)
            let subscription = try await RedisSubscription.connect(to: server.url, on: loop) { received.yield($0) }
            try await subscription.subscribe([keys.feed])
            var iterator = feed.makeAsyncIterator()
            let short = PublishScript.Stream(history: 10, freshEpoch: "first", ttlMilliseconds: 1_500)
            for text in ["a", "b"] { _ = try await PublishScript.publish([(frame("market_data:T", text), keys, short, .channel)], on: redis) }
            for key in [keys.sequence, keys.epoch, keys.history] {
                let ttl = try #require(try await redis.send(["PTTL", RESPArgument(key)]).integer)
                #expect((1...1_500).contains(ttl), "\(key) expires channel-ttl-ms after the last publish, has \(ttl)")
            }
            let firstFeed = try #require(await iterator.next()).payload
            #expect(PublishScript.parseFeedMessage(firstFeed)?.epoch == "first")
            _ = await iterator.next()
            let deadline = ContinuousClock.now + .seconds(5)
            var left = RESPValue.integer(3)
            while left != .integer(0), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
                left = try await redis.send(["EXISTS", RESPArgument(keys.sequence), RESPArgument(keys.epoch), RESPArgument(keys.history)])
            }
            #expect(left == .integer(0), "every key of the channel expired")
            let again = PublishScript.Stream(history: 10, freshEpoch: "second", ttlMilliseconds: 60_000)
            let restarted = try await PublishScript.publish([(frame("market_data:T", "c"), keys, again, .channel)], on: redis)
            #expect(try restarted[0].get() == 1)
            let restartPayload = try #require(await iterator.next()).payload
            let message = try #require(PublishScript.parseFeedMessage(restartPayload))
            #expect(message.seq == 1 && message.epoch == "second", "a new stream: seq 1 of a new epoch")
            // Redis lost the keys under a live stream (FLUSHALL): the stream restarts with a new epoch too.
            _ = try await redis.send(["DEL", RESPArgument(keys.epoch)])
            let third = PublishScript.Stream(history: 10, freshEpoch: "third", ttlMilliseconds: 60_000)
            _ = try await PublishScript.publish([(frame("market_data:T", "d"), keys, third, .channel)], on: redis)
            let afterPayload = try #require(await iterator.next()).payload
            let after = try #require(PublishScript.parseFeedMessage(afterPayload))
            #expect(after.epoch == "third")
            #expect(try await redis.send(["XLEN", RESPArgument(keys.history)]) == .integer(1), "the old stream's history went with it")
            await redis.close()
            await subscription.close()
        }
    }

    @Test func feedMessagesThatAreNotOursAreRefused() {
        #expect(PublishScript.parseFeedMessage(ByteBuffer(string: "12 c e1\n{}"))?.seq == 12)
        #expect(PublishScript.parseFeedMessage(ByteBuffer(string: "12 u e1\n{}"))?.tag == .user)
        #expect(PublishScript.parseFeedMessage(ByteBuffer(string: "12 c e1\n{}"))?.epoch == "e1")
        #expect(PublishScript.parseFeedMessage(ByteBuffer(string: "12 c\n{}")) == nil, "no epoch")
        #expect(PublishScript.parseFeedMessage(ByteBuffer(string: "12 c \n{}")) == nil, "empty epoch")
        #expect(PublishScript.parseFeedMessage(ByteBuffer(string: "0 c e1\n{}")) == nil, "seq 0")
        #expect(PublishScript.parseFeedMessage(ByteBuffer(string: "12 z e1\n{}")) == nil, "unknown tag")
        #expect(PublishScript.parseFeedMessage(ByteBuffer(string: "x c e1\n{}")) == nil)
        #expect(PublishScript.parseFeedMessage(ByteBuffer(string: "no newline")) == nil)
    }

    private func stream(history: Int) -> PublishScript.Stream {
        PublishScript.Stream(history: history, ttlMilliseconds: 60_000)
    }
}
