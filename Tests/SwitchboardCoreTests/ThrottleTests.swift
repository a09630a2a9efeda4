import Foundation
import NIOCore
import NIOEmbedded
import Testing

@testable import SwitchboardCore

/// SPEC §5's throttle and conflation, with time driven by an `EmbeddedEventLoop`.
@Suite struct ThrottleTests {
    let loop = EmbeddedEventLoop()
    let quotes = Namespace(name: "market_data", topic: .required, throttleMs: 100, conflate: true, lastValue: true, history: 100)

    private func subscribedHub() throws -> (Hub, RecordingSubscriber) {
        let hub = Hub(directory: ChannelDirectory(namespaces: [quotes]), scheduler: loop, clock: { 0 })
        let subscriber = RecordingSubscriber()
        hub.subscribe(subscriber, to: try #require(ChannelName("market_data:AAPL")), namespace: quotes) { _, _ in
            Delivery(payload: ByteBuffer(string: "subscribed"))
        }
        return (hub, subscriber)
    }

    private func quote(_ n: Int, key: String? = "AAPL") -> Publication {
        Publication(channel: "market_data:AAPL", event: "quote", data: "\(n)", key: key)
    }

    /// The `data` of each message delivered so far.
    private func data(_ subscriber: RecordingSubscriber) -> [String] {
        subscriber.deliveries.filter(\.isMessage).map { delivery in
            let text = String(buffer: delivery.payload)
            let start = text.range(of: "\"data\":")!.upperBound
            return String(text[start...].prefix { $0 != "," })
        }
    }

    @Test func fiftySameKeyQuotesInOneWindowArriveAsFirstAndLast() throws {
        let (hub, subscriber) = try subscribedHub()
        let first = hub.publish(quote(1), namespace: quotes)
        #expect(first.seq == 1 && !first.held)
        for n in 2...50 { #expect(hub.publish(quote(n), namespace: quotes).held) }
        #expect(data(subscriber) == ["1"])
        loop.advanceTime(by: .milliseconds(100))
        #expect(data(subscriber) == ["1", "50"])
        #expect(subscriber.seqs.filter { $0 > 0 } == [1, 2], "delivered messages are numbered without gaps")
        loop.advanceTime(by: .milliseconds(100))
        #expect(data(subscriber) == ["1", "50"], "an empty window sends nothing")
    }

    @Test func windowGoesIdleAfterAQuietInterval() throws {
        let (hub, subscriber) = try subscribedHub()
        _ = hub.publish(quote(1), namespace: quotes)
        loop.advanceTime(by: .milliseconds(100))
        loop.advanceTime(by: .milliseconds(100))
        #expect(!hub.publish(quote(2), namespace: quotes).held, "first message of an idle window goes out at once")
        #expect(data(subscriber) == ["1", "2"])
    }

    @Test func eachKeyHasItsOwnWindow() throws {
        let (hub, subscriber) = try subscribedHub()
        _ = hub.publish(quote(1, key: "bid"), namespace: quotes)
        _ = hub.publish(quote(2, key: "ask"), namespace: quotes)
        _ = hub.publish(quote(3, key: "bid"), namespace: quotes)
        _ = hub.publish(quote(4, key: "ask"), namespace: quotes)
        _ = hub.publish(quote(5, key: "ask"), namespace: quotes)
        #expect(data(subscriber) == ["1", "2"])
        loop.advanceTime(by: .milliseconds(100))
        #expect(Set(data(subscriber).suffix(2)) == ["3", "5"])
    }

    @Test func keylessMessagesAreNeverDroppedAndLeaveInOrderAtTheWindowsEnd() throws {
        let (hub, subscriber) = try subscribedHub()
        #expect(!hub.publish(quote(1, key: nil), namespace: quotes).held, "the first keyless message opens the window")
        for n in 2...20 { #expect(hub.publish(quote(n, key: nil), namespace: quotes).held) }
        #expect(data(subscriber) == ["1"])
        loop.advanceTime(by: .milliseconds(100))
        #expect(data(subscriber) == (1...20).map(String.init))
        #expect(subscriber.seqs.filter { $0 > 0 } == (1...20).map(UInt64.init))
    }

    @Test func keylessPublishOnAnIdleChannelGoesOutAtOnce() throws {
        let (hub, subscriber) = try subscribedHub()
        let first = hub.publish(quote(1, key: nil), namespace: quotes)
        #expect(first == Hub.PublishResult(seq: 1, recipients: 1), "SPEC §5: no open window, so not held")
        #expect(data(subscriber) == ["1"])
        loop.advanceTime(by: .milliseconds(100))
        loop.advanceTime(by: .milliseconds(100))
        #expect(!hub.publish(quote(2, key: nil), namespace: quotes).held, "the window went idle after a quiet interval")
        #expect(data(subscriber) == ["1", "2"])
    }

    @Test func aKeySpelledLikeTheOldKeylessSentinelIsAnOrdinaryKey() throws {
        let (hub, subscriber) = try subscribedHub()
        _ = hub.publish(quote(1, key: nil), namespace: quotes)
        // Were this key taken for "no key", these would queue behind the keyless window instead of conflating.
        let lookalike = "\u{0}keyless"
        #expect(!hub.publish(quote(2, key: lookalike), namespace: quotes).held, "its own window, idle: out at once")
        #expect(hub.publish(quote(3, key: lookalike), namespace: quotes).held)
        #expect(hub.publish(quote(4, key: lookalike), namespace: quotes).held)
        #expect(data(subscriber) == ["1", "2"])
        loop.advanceTime(by: .milliseconds(100))
        #expect(data(subscriber) == ["1", "2", "4"], "conflated: 3 was replaced by 4")
    }

    @Test func namespaceWithoutConflationKeepsEveryMessage() throws {
        var batched = quotes
        batched.conflate = false
        let hub = Hub(directory: ChannelDirectory(namespaces: [batched]), scheduler: loop, clock: { 0 })
        let subscriber = RecordingSubscriber()
        hub.subscribe(subscriber, to: try #require(ChannelName("market_data:X")), namespace: batched) { _, _ in
            Delivery(payload: ByteBuffer(string: "subscribed"))
        }
        for n in 1...5 { _ = hub.publish(Publication(channel: "market_data:X", event: "q", data: "\(n)", key: "k"), namespace: batched) }
        loop.advanceTime(by: .milliseconds(100))
        #expect(subscriber.seqs.filter { $0 > 0 } == [1, 2, 3, 4, 5])
    }

    @Test func conflatedDeliveriesCarryTheirChannelAndKey() throws {
        let (hub, subscriber) = try subscribedHub()
        _ = hub.publish(quote(1), namespace: quotes)
        #expect(subscriber.deliveries.last?.conflationKey == "market_data:AAPL\u{0}AAPL")
    }

    @Test func batchFrameJoinsPayloadsInOrder() {
        let deliveries = ["{\"a\":1}", "{\"b\":2}"].enumerated().map {
            Delivery.message(Self.message(UInt64($0.offset + 1), data: $0.element), conflationKey: nil)
        }
        let frame = BatchFrame.frame(of: deliveries)
        #expect(frame.getInteger(at: frame.readerIndex, as: UInt8.self) == 0x81)
        #expect(String(buffer: WebSocketWireFrame.payload(of: frame)) == """
            {"type":"batch","messages":[{"type":"message","channel":"c","event":"e","data":{"a":1},"seq":1,"ts":0},\
            {"type":"message","channel":"c","event":"e","data":{"b":2},"seq":2,"ts":0}]}
            """)
    }

    @Test func batchFrameCacheSharesTheFrameOfTheSameMessagesOnly() {
        let deliveries = (1...3).map { Delivery.message(Self.message(UInt64($0), data: "{\"n\":\($0)}"), conflationKey: nil) }
        var cache = BatchFrameCache()
        let first = cache.frame(of: deliveries[0...1])
        let again = cache.frame(of: Array(deliveries[0...1])[...])
        #expect(first == BatchFrame.frame(of: deliveries[0...1]))
        #expect(first.withUnsafeReadableBytes { $0.baseAddress } == again.withUnsafeReadableBytes { $0.baseAddress }, "same messages: same bytes, not a copy")
        let other = cache.frame(of: deliveries[1...2])
        #expect(String(buffer: other).hasSuffix(#""data":{"n":3},"seq":3,"ts":0}]}"#), "other messages: a new frame")
        let lookalike = Delivery.message(Self.message(1, data: "{\"n\":9}"), conflationKey: nil)
        #expect(String(buffer: cache.frame(of: [lookalike, deliveries[2]][...])).contains(#"{"n":9}"#), "compared by identity, not seq")
    }

    static func message(_ seq: UInt64, data: String) -> Message {
        Message(channel: "c", event: "e", data: ByteBuffer(string: data), seq: seq, timestampMs: 0)
    }
}
