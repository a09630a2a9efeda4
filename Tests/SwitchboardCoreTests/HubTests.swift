import NIOCore
import NIOEmbedded
import NIOPosix
import Synchronization
import Testing

@testable import SwitchboardCore

/// Records what the hub hands it.
final class RecordingSubscriber: Subscriber {
    private let received = Mutex<[Delivery]>([])

    func deliver(_ delivery: Delivery) {
        received.withLock { $0.append(delivery) }
    }

    var deliveries: [Delivery] { received.withLock { $0 } }
    var seqs: [UInt64] { deliveries.map(\.seq) }
}

/// A lane that records what the hub asks of it.
final class RecordingLane: FanoutLane {
    private let log = Mutex<(joins: [(UInt64, UInt64)], leaves: [UInt64], members: Set<UInt64>, queued: [UInt64])>(([], [], [], []))

    func join(_ member: UInt64, after seq: UInt64) {
        log.withLock { $0.joins.append((member, seq)); $0.members.insert(member) }
    }

    func leave(_ member: UInt64) -> Bool {
        log.withLock { $0.leaves.append(member); $0.members.remove(member); return $0.members.isEmpty }
    }

    func enqueue(_ delivery: Delivery) {
        log.withLock { $0.queued.append(delivery.seq) }
    }

    var joins: [(member: UInt64, after: UInt64)] { log.withLock { $0.joins } }
    var leaves: [UInt64] { log.withLock { $0.leaves } }
    var queued: [UInt64] { log.withLock { $0.queued } }
}

/// Makes recording lanes, keeping every one it made.
final class RecordingGroup: FanoutGroup {
    private let made = Mutex<[RecordingLane]>([])

    func makeLane() -> any FanoutLane {
        let lane = RecordingLane()
        made.withLock { $0.append(lane) }
        return lane
    }

    var lanes: [RecordingLane] { made.withLock { $0 } }
}

/// A subscriber reached through `group`'s lanes; what the hub delivers to it directly is recorded.
final class LanedSubscriber: Subscriber {
    let direct = RecordingSubscriber()
    let fanout: FanoutMembership?

    init(group: RecordingGroup, member: UInt64) {
        fanout = FanoutMembership(group: group, member: member)
    }

    func deliver(_ delivery: Delivery) {
        direct.deliver(delivery)
    }
}

@Suite struct HubTests {
    let directory = ChannelDirectory()
    let loop = EmbeddedEventLoop()
    /// `market_data` without its throttle, for the rules that do not depend on time.
    let marketData = Namespace(name: "market_data", topic: .required, conflate: true, lastValue: true, history: 100)
    let admin = Namespace(name: "admin", minRole: .admin, topic: .forbidden)

    private func makeHub(_ namespaces: [Namespace]? = nil) -> Hub {
        Hub(directory: namespaces.map { ChannelDirectory(namespaces: $0) } ?? directory, scheduler: loop, clock: { 1_000 })
    }

    private func reply(_ recovered: Bool?, _ epoch: String) -> Delivery {
        Delivery(payload: ByteBuffer(string: recovered.map { "subscribed:\($0)" } ?? "subscribed"))
    }

    /// The epoch a `subscribed` reply carried.
    private final class EpochProbe: @unchecked Sendable {
        var epoch: String?
        var recovered: Bool??
        func reply(_ recovered: Bool?, _ epoch: String) -> Delivery {
            self.epoch = epoch
            self.recovered = recovered
            return Delivery(payload: ByteBuffer(string: "subscribed"))
        }
    }

    @Test func publishIsEncodedOnceAndSharedByEveryRecipient() throws {
        let hub = makeHub()
        let subscribers = (0..<3).map { _ in RecordingSubscriber() }
        let channel = try #require(ChannelName("admin"))
        for subscriber in subscribers {
            hub.subscribe(subscriber, to: channel, namespace: admin, reply: reply)
        }
        let result = hub.publish(Publication(channel: "admin", event: "e", data: #"{"x":1}"#), namespace: admin)
        #expect(result == Hub.PublishResult(seq: 1, recipients: 3))
        let frames = subscribers.map { $0.deliveries[1].frame }
        // Same storage, not equal copies: the frame was built once and every queue references it.
        let addresses = frames.map { frame in frame.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) } }
        #expect(Set(addresses).count == 1)
        #expect(String(buffer: subscribers[0].deliveries[1].payload)
            == #"{"type":"message","channel":"admin","event":"e","data":{"x":1},"seq":1,"ts":1000}"#)
    }

    @Test func lanedSubscribersCostOneHandOverPerLaneAndJoinAfterTheCurrentSeq() throws {
        let hub = makeHub()
        let group = RecordingGroup()
        let channel = try #require(ChannelName("market_data:A"))
        let first = LanedSubscriber(group: group, member: 1)
        let plain = RecordingSubscriber()
        hub.subscribe(first, to: channel, namespace: marketData, reply: reply)
        hub.subscribe(plain, to: channel, namespace: marketData, reply: reply)
        _ = hub.publish(Publication(channel: "market_data:A", event: "q", data: "1"), namespace: marketData)
        let second = LanedSubscriber(group: group, member: 2)
        hub.subscribe(second, to: channel, namespace: marketData, since: 0, reply: reply)
        let result = hub.publish(Publication(channel: "market_data:A", event: "q", data: "2"), namespace: marketData)
        #expect(result.recipients == 3)
        let lane = try #require(group.lanes.first)
        #expect(group.lanes.count == 1, "members of one group share the channel's lane")
        #expect(lane.joins.map(\.member) == [1, 2] && lane.joins.map(\.after) == [0, 1])
        #expect(lane.queued == [1, 2], "one hand-over per message, however many members")
        #expect(plain.seqs == [0, 1, 2])
        // The reply and the replay go to the subscriber itself; later messages only through the lane.
        #expect(first.direct.seqs == [0] && second.direct.seqs == [0, 1])
        // A per-user publish reaches a laned subscriber once, through its lane.
        _ = hub.publish(
            Publication(channel: "market_data:A", event: "q", data: "3"), namespace: marketData, extraRecipients: [first])
        #expect(first.direct.seqs == [0] && lane.queued == [1, 2, 3])
        #expect(hub.unsubscribe(first, from: "market_data:A") && hub.unsubscribe(second, from: "market_data:A"))
        #expect(lane.leaves == [1, 2])
        hub.subscribe(first, to: channel, namespace: marketData, reply: reply)
        #expect(group.lanes.count == 2, "an emptied lane is dropped; a new member gets a new one")
    }

    @Test func seqIncreasesByOnePerChannel() throws {
        let hub = makeHub()
        let subscriber = RecordingSubscriber()
        hub.subscribe(subscriber, to: try #require(ChannelName("market_data:A")), namespace: marketData, reply: reply)
        hub.subscribe(subscriber, to: try #require(ChannelName("market_data:B")), namespace: marketData, reply: reply)
        for channel in ["market_data:A", "market_data:B", "market_data:A"] {
            _ = hub.publish(Publication(channel: channel, event: "q", data: "1"), namespace: marketData)
        }
        #expect(subscriber.seqs == [0, 0, 1, 1, 2])
    }

    @Test func concurrentPublishersKeepPerChannelOrder() async throws {
        let hub = makeHub()
        let subscribers = (0..<50).map { _ in RecordingSubscriber() }
        let channel = try #require(ChannelName("admin"))
        for subscriber in subscribers { hub.subscribe(subscriber, to: channel, namespace: admin, reply: reply) }
        let admin = self.admin
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    for _ in 0..<250 { _ = hub.publish(Publication(channel: "admin", event: "e", data: "0"), namespace: admin) }
                }
            }
        }
        for subscriber in subscribers {
            #expect(subscriber.seqs == [0] + (1...1000).map(UInt64.init))
        }
    }

    @Test func recoveryReplaysMissedMessagesAfterTheReply() throws {
        let hub = makeHub()
        for _ in 1...5 { _ = hub.publish(Publication(channel: "market_data:A", event: "q", data: "1"), namespace: marketData) }
        let late = RecordingSubscriber()
        hub.subscribe(late, to: try #require(ChannelName("market_data:A")), namespace: marketData, since: 2, reply: reply)
        #expect(String(buffer: late.deliveries[0].payload) == "subscribed:true")
        #expect(late.seqs.dropFirst() == [3, 4, 5])
    }

    @Test func recoveryBeyondHistorySaysNotRecoveredAndSendsLastValue() throws {
        var small = marketData
        small.history = 2
        let hub = makeHub([small])
        for _ in 1...5 { _ = hub.publish(Publication(channel: "market_data:A", event: "q", data: "1"), namespace: small) }
        let late = RecordingSubscriber()
        hub.subscribe(late, to: try #require(ChannelName("market_data:A")), namespace: small, since: 1, reply: reply)
        #expect(String(buffer: late.deliveries[0].payload) == "subscribed:false")
        #expect(late.seqs.dropFirst() == [5])
    }

    @Test func lastValueFollowsTheReply() throws {
        let hub = makeHub()
        _ = hub.publish(Publication(channel: "market_data:A", event: "q", data: "1"), namespace: marketData)
        _ = hub.publish(Publication(channel: "market_data:A", event: "q", data: "2"), namespace: marketData)
        let subscriber = RecordingSubscriber()
        hub.subscribe(subscriber, to: try #require(ChannelName("market_data:A")), namespace: marketData, reply: reply)
        #expect(subscriber.seqs == [0, 2])
    }

    @Test func subscribingTwiceRepliesAgainWithoutResending() throws {
        let hub = makeHub()
        _ = hub.publish(Publication(channel: "market_data:A", event: "q", data: "1"), namespace: marketData)
        let subscriber = RecordingSubscriber()
        let channel = try #require(ChannelName("market_data:A"))
        #expect(hub.subscribe(subscriber, to: channel, namespace: marketData, reply: reply))
        #expect(!hub.subscribe(subscriber, to: channel, namespace: marketData, reply: reply))
        #expect(subscriber.seqs == [0, 1, 0])
    }

    @Test func emptyChannelThatKeepsNothingIsFreed() throws {
        let hub = makeHub()
        let subscriber = RecordingSubscriber()
        hub.subscribe(subscriber, to: try #require(ChannelName("admin")), namespace: admin, reply: reply)
        #expect(hub.channelCount == 1)
        #expect(hub.unsubscribe(subscriber, from: "admin"))
        #expect(hub.channelCount == 0)
        #expect(!hub.unsubscribe(subscriber, from: "admin"))
    }

    @Test func aRetainingChannelThatWasOnlySubscribedIsFreedWithItsLastSubscriber() throws {
        let hub = makeHub()
        let subscriber = RecordingSubscriber()
        for topic in ["A", "B", "C"] {
            hub.subscribe(subscriber, to: try #require(ChannelName("market_data:\(topic)")), namespace: marketData, reply: reply)
        }
        #expect(hub.channelCount == 3)
        _ = hub.publish(Publication(channel: "market_data:B", event: "q", data: "1"), namespace: marketData)
        for topic in ["A", "B", "C"] { hub.unsubscribe(subscriber, from: "market_data:\(topic)") }
        #expect(hub.channelCount == 1, "subscribing retains nothing; B's publish is retained for channel-ttl-ms")
    }

    @Test func retainedStateIsDroppedAfterTheRetentionAndTheStreamStartsAgainWithANewEpoch() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let hub = Hub(directory: directory, scheduler: group.next(), retention: .milliseconds(150), clock: { 1_000 })
        let probe = EpochProbe()
        let channel = try #require(ChannelName("market_data:A"))
        for _ in 1...3 { _ = hub.publish(Publication(channel: "market_data:A", event: "q", data: "1"), namespace: marketData) }
        hub.subscribe(RecordingSubscriber(), to: channel, namespace: marketData, reply: probe.reply)
        let first = try #require(probe.epoch)
        hub.subscribe(RecordingSubscriber(), to: channel, namespace: marketData, since: 3, epoch: first, reply: probe.reply)
        #expect(probe.recovered == true)
        let watcher = RecordingSubscriber()
        hub.subscribe(watcher, to: channel, namespace: marketData, reply: probe.reply)
        hub.unsubscribe(watcher, from: "market_data:A")
        // The other two subscribers are still there: the stream is kept while anyone listens.
        try await Task.sleep(for: .milliseconds(300))
        #expect(hub.channelCount == 1)
        let empty = Hub(directory: directory, scheduler: group.next(), retention: .milliseconds(150), clock: { 1_000 })
        _ = empty.publish(Publication(channel: "market_data:A", event: "q", data: "1"), namespace: marketData)
        #expect(empty.channelCount == 1)
        let deadline = ContinuousClock.now + .seconds(2)
        while empty.channelCount > 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(empty.channelCount == 0, "retained state goes channel-ttl-ms after the last publish")
        let late = RecordingSubscriber()
        empty.subscribe(late, to: channel, namespace: marketData, since: 1, epoch: first, reply: probe.reply)
        #expect(probe.recovered == false && probe.epoch != first, "a new stream never recovers an old position")
        #expect(late.seqs == [0], "nothing retained: no last value")
    }

    @Test func recoveryNeedsTheCurrentEpochAndAPositionInsideTheStream() throws {
        let hub = makeHub()
        let probe = EpochProbe()
        let channel = try #require(ChannelName("market_data:A"))
        for _ in 1...3 { _ = hub.publish(Publication(channel: "market_data:A", event: "q", data: "1"), namespace: marketData) }
        hub.subscribe(RecordingSubscriber(), to: channel, namespace: marketData, reply: probe.reply)
        let epoch = try #require(probe.epoch)
        let cases: [(since: UInt64, epoch: String?, recovered: Bool)] = [
            (2, epoch, true), (3, epoch, true), (2, nil, true), (2, "other", false), (3, "other", false), (4, nil, false), (9, epoch, false),
        ]
        for (since, given, expected) in cases {
            let subscriber = RecordingSubscriber()
            hub.subscribe(subscriber, to: channel, namespace: marketData, since: since, epoch: given, reply: probe.reply)
            #expect(probe.recovered == expected, "since \(since) epoch \(given ?? "none")")
            #expect(probe.epoch == epoch)
        }
    }

    @Test func aSequencedMessageOfANewEpochRestartsTheStream() throws {
        let hub = makeHub()
        let subscriber = RecordingSubscriber()
        let probe = EpochProbe()
        hub.subscribe(subscriber, to: try #require(ChannelName("admin")), namespace: admin, reply: probe.reply)
        func message(_ seq: UInt64) -> Message {
            Message(channel: "admin", event: "e", data: ByteBuffer(string: "{}"), seq: seq, timestampMs: 0)
        }
        for seq in 1...3 {
            hub.deliverSequenced(message(UInt64(seq)), channel: "admin", namespace: admin, epoch: "one", key: nil)
        }
        #expect(hub.deliverSequenced(message(2), channel: "admin", namespace: admin, epoch: "one", key: nil) == 0)
        #expect(hub.deliverSequenced(message(1), channel: "admin", namespace: admin, epoch: "two", key: nil) == 1)
        #expect(subscriber.seqs == [0, 1, 2, 3, 1])
        #expect(hub.statistics.snapshot().streamRestarts == 1)
    }

    @Test func publishWithNobodyOnAChannelThatKeepsNothingCreatesNothing() {
        let hub = makeHub()
        #expect(hub.publish(Publication(channel: "admin", event: "e", data: "1"), namespace: admin) == .init(seq: nil, recipients: 0))
        #expect(hub.channelCount == 0)
    }

    @Test func jsonStringsAreEscaped() {
        var buffer = ByteBuffer()
        buffer.writeJSONString("a\"b\\c\n\u{1}é")
        #expect(String(buffer: buffer) == #""a\"b\\c\n\u0001é""#)
    }
}
