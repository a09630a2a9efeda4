public import CoreMetrics
public import NIOCore
import Synchronization

/// Channels, their subscribers and the publish path (SPEC §4, §5).
///
/// A publish is encoded once and handed, as the same bytes, to every subscriber's outbound queue;
/// nothing here ever waits for a socket.
public final class Hub: Sendable {
    public let directory: ChannelDirectory
    private let channels = Mutex<[String: ChannelState]>([:])
    private let globalSeq = Mutex<UInt64>(0)
    private let clock: @Sendable () -> Int64
    /// Runs the throttle windows' timers.
    private let scheduler: any EventLoop
    /// Counters of published, delivered and dropped messages.
    public let statistics: NodeStatistics
    /// How long a channel's retained state outlives its last publish (`channel-ttl-ms`, SPEC §4).
    public let retention: TimeAmount

    /// - Parameters:
    ///   - directory: the namespace table.
    ///   - scheduler: event loop for throttle timers.
    ///   - statistics: where publishes, deliveries and drops are counted.
    ///   - retention: how long a channel's retained state outlives its last publish.
    ///   - clock: milliseconds since the epoch, stamped on each message as `ts`.
    public init(
        directory: ChannelDirectory,
        scheduler: any EventLoop,
        statistics: NodeStatistics? = nil,
        retention: TimeAmount = Hub.defaultRetention,
        clock: @escaping @Sendable () -> Int64 = Hub.wallClockMilliseconds
    ) {
        self.directory = directory
        self.retention = retention
        self.scheduler = scheduler
        self.statistics = statistics ?? NodeStatistics(namespaces: Array(directory.namespaces.keys), factory: NOOPMetricsHandler.instance)
        self.clock = clock
    }

    /// The result of a publish.
    public struct PublishResult: Sendable, Equatable {
        /// The message's `seq` on its channel; nil when it was not sent now (held by the throttle, or
        /// nobody to receive it on a channel that keeps nothing).
        public var seq: UInt64?
        /// How many connections it was queued for.
        public var recipients: Int
        /// Held by the throttle: it goes out at the window's end, unless a newer one with its key replaces it.
        public var held: Bool

        public init(seq: UInt64?, recipients: Int, held: Bool = false) {
            self.seq = seq
            self.recipients = recipients
            self.held = held
        }
    }

    /// Publishes on a channel whose name the caller has already resolved.
    ///
    /// A channel that keeps nothing (no history, no last value) and has no subscriber or extra recipient is
    /// not created: nobody receives the message.
    /// - Parameter extraRecipients: connections that receive the message whether or not they subscribed
    ///   (a `userId` target); such a publish is never held by the throttle.
    public func publish(_ publication: Publication, namespace: Namespace, extraRecipients: [any Subscriber] = []) -> PublishResult {
        let channel = state(
            of: publication.channel, namespace, keep: namespace.retainsMessages || namespace.throttleMs > 0,
            reachesExtras: !extraRecipients.isEmpty)
        guard let channel else {
            statistics.recordPublished(namespace: namespace.name)
            return PublishResult(seq: nil, recipients: 0)
        }
        return channel.publish(publication, extraRecipients: extraRecipients)
    }

    /// Sends a global message (`all: true`, SPEC §5) to `recipients`, encoded once with `channel: null`.
    /// Global messages have their own `seq` sequence.
    public func publishGlobal(_ publication: Publication, to recipients: [any Subscriber]) -> PublishResult {
        globalSeq.withLock { seq in
            seq += 1
            statistics.recordPublished(namespace: "")
            fanOutGlobal(Message(publication, seq: seq, timestampMs: clock(), global: true), to: recipients)
            return PublishResult(seq: seq, recipients: recipients.count)
        }
    }

    /// Delivers a message a broker sequenced elsewhere (cluster mode, stream `epoch`) to this node's subscribers
    /// of its channel and to `extraRecipients`, keeping it as a local publish would be kept.
    /// - Returns: how many connections of this node it was queued for.
    @discardableResult
    public func deliverSequenced(
        _ message: Message, channel: String, namespace: Namespace, epoch: String, key: String?, extraRecipients: [any Subscriber] = []
    ) -> Int {
        guard let state = state(of: channel, namespace, keep: namespace.retainsMessages, reachesExtras: !extraRecipients.isEmpty)
        else { return 0 }
        return state.deliverSequenced(message, epoch: epoch, key: key, extraRecipients: extraRecipients)
    }

    /// Delivers a global message (`all: true`) a broker sequenced elsewhere to `recipients`; a later local
    /// global publish (a cluster node cut off from Redis) continues after its `seq`.
    public func deliverGlobalSequenced(_ message: Message, to recipients: [any Subscriber]) {
        globalSeq.withLock { $0 = max($0, message.seq) }
        fanOutGlobal(message, to: recipients)
    }

    private func fanOutGlobal(_ message: Message, to recipients: [any Subscriber]) {
        let delivery = Delivery.message(message, conflationKey: nil)
        for recipient in recipients { recipient.deliver(delivery) }
        statistics.recordDelivered(namespace: "", recipients: recipients.count)
    }

    /// Adds what a cluster holds of a channel this node has not seen whole (a node that started after some of
    /// its messages): `messages` (complete message JSON by `seq`, any order) go into the history and last value
    /// below what the node already keeps, and the channel's `seq` is raised to `lastSeq`, so that a subscribe
    /// with `since` answers as on every other node. The cluster's stream `epoch` replaces another one the node
    /// held. A channel that retains nothing is left alone.
    public func seed(channel: String, namespace: Namespace, epoch: String, lastSeq: UInt64, messages: [Message]) {
        guard namespace.retainsMessages else { return }
        state(of: channel, namespace, keep: true, reachesExtras: false)?.seed(epoch: epoch, lastSeq: lastSeq, messages: messages)
    }

    /// What a channel holds, for a client that polls for what it missed (see ``history(of:since:epoch:)``).
    public struct History: Sendable {
        /// The current stream's epoch; nil when the node holds no stream of the channel.
        public var epoch: String?
        /// The stream's last `seq` (0: none yet).
        public var seq: UInt64
        /// With a `since`: whether it named a position in the current stream with every later message held.
        public var recovered: Bool?
        /// Complete message JSON, in `seq` order.
        public var messages: [ByteBuffer]
    }

    /// What `channel` holds, read without subscribing: its epoch and last `seq`, and the messages after `since`
    /// when that position is recovered (SPEC §5's rule for `subscribe`), else every message held. A channel the
    /// node does not hold is not created: it has no stream.
    public func history(of channel: String, since: UInt64?, epoch: String?) -> History {
        guard let state = channels.withLock({ $0[channel] }) else {
            return History(epoch: nil, seq: 0, recovered: since.map { _ in false }, messages: [])
        }
        return state.history(since: since, epoch: epoch)
    }

    /// Starts a new stream of `channel`, numbered on after its last `seq`, if the node holds the channel: it is
    /// about to sequence the channel itself while the cluster's stream is out of reach (SPEC §5, §8).
    public func restartStream(channel: String) {
        channels.withLock { $0[channel] }?.restartStream()
    }

    /// The live channel `name`, or a new one: kept in the table when `keep` (it retains or throttles something),
    /// made for this one message only when it just `reachesExtras` (a `userId` target's connections), else nil
    /// (nobody would receive it).
    private func state(of name: String, _ namespace: Namespace, keep: Bool, reachesExtras: Bool) -> ChannelState? {
        channels.withLock { channels in
            if let existing = channels[name] { return existing }
            guard keep || reachesExtras else { return nil }
            let created = makeChannel(name, namespace)
            if keep { channels[name] = created }
            return created
        }
    }

    private func makeChannel(_ name: String, _ namespace: Namespace) -> ChannelState {
        ChannelState(
            name: name, namespace: namespace, scheduler: scheduler, statistics: statistics, clock: clock, retention: retention,
            collect: { [weak self] channel in self?.collect(channel) })
    }

    /// Frees `channel` if it is unused (no subscriber, no open window, nothing retained or its retention run out).
    private func collect(_ channel: ChannelState) {
        channels.withLock { channels in
            guard channel.expire(), channels[channel.name] === channel else { return }
            channels[channel.name] = nil
        }
    }

    /// Subscribes; `reply` builds the `subscribed` frame (with the stream's epoch), queued before any replayed
    /// message or last value. `since` and `epoch` are the client's position in the stream, if it has one.
    /// - Returns: false when `subscriber` was already subscribed (the reply is sent again, nothing else).
    @discardableResult
    public func subscribe(
        _ subscriber: any Subscriber,
        to channel: ChannelName,
        namespace: Namespace,
        since: UInt64? = nil,
        epoch: String? = nil,
        reply: (_ recovered: Bool?, _ epoch: String) -> Delivery
    ) -> Bool {
        while true {
            guard let state = state(of: channel.description, namespace, keep: true, reachesExtras: false) else { return false }
            switch state.subscribe(subscriber, since: since, epoch: epoch, reply: reply) {
            case .subscribed: return true
            case .alreadySubscribed: return false
            case .closed: continue
            }
        }
    }

    /// Unsubscribes; an empty channel that retains nothing is freed. Returns whether it was subscribed.
    @discardableResult
    public func unsubscribe(_ subscriber: any Subscriber, from channel: String) -> Bool {
        channels.withLock { channels in
            guard let state = channels[channel] else { return false }
            let (removed, closed) = state.unsubscribe(subscriber)
            if closed { channels[channel] = nil }
            return removed
        }
    }

    /// Number of live channels (including empty ones that retain messages).
    public var channelCount: Int { channels.withLock { $0.count } }

    /// Subscribers of channel `name` on this node.
    public func subscriberCount(of name: String) -> Int {
        channels.withLock { $0[name] }?.subscriberCount ?? 0
    }

    /// Whether the node holds channel `name` now.
    public func holds(_ name: String) -> Bool { channels.withLock { $0[name] != nil } }

    /// `channel-ttl-ms`'s default: 10 minutes.
    public static let defaultRetention: TimeAmount = .minutes(10)

    /// Live channels with their subscriber counts, by name.
    public func channelSummaries() -> [(name: String, subscribers: Int)] {
        let states = channels.withLock { Array($0.values) }
        return states.map { ($0.name, $0.subscriberCount) }.sorted { $0.name < $1.name }
    }

    @Sendable public static func wallClockMilliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
