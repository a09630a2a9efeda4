import NIOCore
import NIOPosix
import RedisClient
import RedisTestSupport
import Testing

@testable import RedisBroker

/// Cluster mode's publish script against a real Redis: one `seq` order per channel whichever connection
/// (node) published, every message in the feed exactly once, the history stream holding the last N frames.
@Suite struct PublishScriptTests {
    let loop = MultiThreadedEventLoopGroup.singleton.next()

    private func frame(_ channel: String, _ text: String) -> PublishScript.Frame {
        .init(
            head: ByteBuffer(string: #"{"type":"message","channel":"\#(channel)","event":"e","data":"\#(text)","seq":"#),
            tail: ByteBuffer(string: #","ts":1}"#))
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
                                texts.map { (frame("market_data:AAPL", $0), keys, 100, .channel) }, on: node)
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
            for _ in 1...1000 {
                let message = try #require(await iterator.next())
                let (seq, tag, frame) = try #require(PublishScript.parseFeedMessage(message.payload))
                #expect(tag == .channel)
                delivered.append((seq, String(buffer: frame)))
            }
            #expect(delivered.map(\.0) == Array(1...1000), "the feed carries one order, each message once")
            let bySeq = Dictionary(uniqueKeysWithValues: accepted)
            #expect(delivered.allSatisfy { seq, frame in
                frame.hasSuffix(#""seq":\#(seq),"ts":1}"#) && frame.contains(#""data":"\#(bySeq[seq] ?? "?")""#)
            }, "each frame completed with its own seq, and it is the message that got that seq")
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
            let first = try await PublishScript.publish([(frame("system_status", "a"), keys, 0, .channel)], on: redis)
            #expect(try first[0].get() == 1)
            #expect(try await redis.send(["EXISTS", RESPArgument(keys.history)]) == .integer(0))
            _ = try await redis.send(["SCRIPT", "FLUSH"])  // as after a Redis restart that kept its data
            let second = try await PublishScript.publish([(frame("system_status", "b"), keys, 0, .channel)], on: redis)
            #expect(try second[0].get() == 2, "seq goes on; the script is sent again on NOSCRIPT")
            await redis.close()
        }
    }

    @Test func feedMessagesThatAreNotOursAreRefused() {
        #expect(PublishScript.parseFeedMessage(ByteBuffer(string: "12 c\n{}"))?.seq == 12)
        #expect(PublishScript.parseFeedMessage(ByteBuffer(string: "12 u\n{}"))?.tag == .user)
        #expect(PublishScript.parseFeedMessage(ByteBuffer(string: "12\n{}")) == nil, "no tag")
        #expect(PublishScript.parseFeedMessage(ByteBuffer(string: "12 z\n{}")) == nil, "unknown tag")
        #expect(PublishScript.parseFeedMessage(ByteBuffer(string: "x c\n{}")) == nil)
        #expect(PublishScript.parseFeedMessage(ByteBuffer(string: "no newline")) == nil)
    }
}
