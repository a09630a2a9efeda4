import DequeModule
import NIOCore
import Synchronization

/// One live channel: its subscribers, its `seq` counter, what it retains (history, last value) and,
/// on throttled namespaces, its throttle windows.
///
/// Sequencing a message, storing it and enqueueing it to every subscriber (or to its lane, which keeps the
/// order) happen under this channel's lock, so every subscriber sees the channel's messages in `seq` order
/// and a replay never interleaves with live messages (SPEC §5). `seq` is assigned when a message goes out,
/// so delivered messages are numbered without gaps even when conflation drops some.
///
/// Lifetime (SPEC §4): a channel is *unused* when it has no subscriber, no open throttle window and retains
/// nothing; the hub frees an unused channel at once. What it retains (history, last value, `seq`, epoch) is
/// kept for `retention` after its last publish: a timer then asks the hub to ``Hub/collect(_:)`` it. A
/// channel that still has subscribers keeps its stream until the last one leaves (its `seq` is never
/// renumbered under a live subscriber); it is freed then if its retention has run out.
final class ChannelState: Sendable {
    let name: String
    let namespace: Namespace
    private let scheduler: any EventLoop
    private let clock: @Sendable () -> Int64
    private let statistics: NodeStatistics
    /// How long retained state outlives the channel's last publish (`channel-ttl-ms`).
    private let retention: TimeAmount
    /// Hands the channel back to the hub when its retention ran out or its last throttle window closed.
    private let collect: @Sendable (ChannelState) -> Void

    private struct State {
        var subscribers = ChannelMembers()
        var seq: UInt64 = 0
        /// The current stream's epoch (SPEC §5): chosen when first needed, replaced when the stream restarts.
        var epoch: String?
        var history: Deque<Delivery> = []
        var lastValue: Delivery?
        var throttle: Throttle?
        /// When the channel last kept a message (retaining namespaces only); nil while it retains nothing.
        var lastPublish: NIODeadline?
        /// Whether the retention timer is scheduled.
        var retentionTimerArmed = false
        /// Set once the hub has dropped this channel; a late subscriber must look it up again.
        var isClosed = false

        /// Nothing a later subscriber could need, and nobody listening: the channel can go.
        var isUnused: Bool { subscribers.isEmpty && lastPublish == nil && (throttle?.isIdle ?? true) }

        /// SPEC §5's recovery rule, for `subscribe` and the history endpoint alike: the messages after `since`
        /// when it names a position in the current stream (of `epoch`, when given) with every later message still
        /// held; nil when it does not (a new stream, a position ahead of it, or messages no longer held).
        func recovery(since: UInt64, epoch: String?) -> [Delivery]? {
            guard let current = self.epoch, epoch == nil || epoch == current, since <= seq else { return nil }
            let missed = Array(history.filter { $0.seq > since })
            return since == seq || missed.first?.seq == since + 1 ? missed : nil
        }

        mutating func dropStream() {
            seq = 0
            epoch = nil
            history = []
            lastValue = nil
            lastPublish = nil
        }
    }

    private let state: Mutex<State>

    init(
        name: String, namespace: Namespace, scheduler: any EventLoop, statistics: NodeStatistics,
        clock: @escaping @Sendable () -> Int64, retention: TimeAmount, collect: @escaping @Sendable (ChannelState) -> Void
    ) {
        self.name = name
        self.namespace = namespace
        self.scheduler = scheduler
        self.statistics = statistics
        self.clock = clock
        self.retention = retention
        self.collect = collect
        var initial = State()
        if namespace.throttleMs > 0 { initial.throttle = Throttle(conflate: namespace.conflate) }
        self.state = Mutex(initial)
    }

    /// Publishes through the throttle (if any); `extraRecipients` (a `userId` target's connections) get the
    /// message too, once, and such a publish is never held.
    func publish(_ publication: Publication, extraRecipients: [any Subscriber] = []) -> Hub.PublishResult {
        statistics.recordPublished(namespace: namespace.name)
        return state.withLock { state in
            guard extraRecipients.isEmpty, let decision = state.throttle?.offer(publication) else {
                return deliver(publication, extraRecipients: extraRecipients, state: &state)
            }
            switch decision {
            case .deliverNow(let window):
                scheduleWindowEnd(window)
                return deliver(publication, extraRecipients: [], state: &state)
            case .held(let replaced):
                if replaced { statistics.recordDropped(namespace: namespace.name, reason: .conflated) }
                return Hub.PublishResult(seq: nil, recipients: 0, held: true)
            }
        }
    }

    private func scheduleWindowEnd(_ window: Throttle.Window) {
        scheduler.scheduleTask(in: .milliseconds(Int64(namespace.throttleMs))) { [self] in
            self.windowEnded(window)
        }
    }

    private func windowEnded(_ window: Throttle.Window) {
        let unused = state.withLock { state -> Bool in
            guard let (batch, keepOpen) = state.throttle?.windowEnded(window) else { return false }
            for publication in batch { _ = deliver(publication, extraRecipients: [], state: &state) }
            if keepOpen { scheduleWindowEnd(window) }
            return state.isUnused
        }
        if unused { collect(self) }
    }

    /// Assigns the next `seq`, encodes once and queues the same bytes for every recipient. Lock held.
    private func deliver(_ publication: Publication, extraRecipients: [any Subscriber], state: inout State) -> Hub.PublishResult {
        if state.seq == 0 { state.epoch = state.epoch ?? StreamEpoch.make() }
        state.seq += 1
        let delivery = Delivery.message(
            Message(publication, seq: state.seq, timestampMs: clock()), conflationKey: conflationKey(of: publication.key), namespace: namespace.name)
        return distribute(delivery, extraRecipients: extraRecipients, state: &state)
    }

    private func conflationKey(of key: String?) -> String? {
        namespace.conflate ? key.map { "\(name)\u{0}\($0)" } : nil
    }

    /// A message a broker sequenced elsewhere (cluster mode), of the stream `epoch`. Kept and fanned out like a
    /// local publish; a message of another epoch starts the stream again (the cluster's stream restarted: Redis lost or expired it); a `seq` at or below
    /// the channel's last is ignored (the broker hands each on once, in order, so that is only a late duplicate).
    func deliverSequenced(_ message: Message, epoch: String, key: String?, extraRecipients: [any Subscriber]) -> Int {
        let seq = message.seq
        return state.withLock { state in
            if state.epoch != epoch {
                if state.seq > 0 { statistics.recordStreamRestart() }
                state.dropStream()
                state.epoch = epoch
            }
            guard seq > state.seq else { return 0 }
            state.seq = seq
            let delivery = Delivery.message(message, conflationKey: conflationKey(of: key), namespace: namespace.name)
            return distribute(delivery, extraRecipients: extraRecipients, state: &state).recipients
        }
    }

    /// Starts a new stream (a new epoch) that goes on numbering after the last `seq`: this node is about to
    /// sequence the channel by itself while the cluster's stream is out of reach (SPEC §5), so its numbers are not
    /// the cluster's. The history of the old stream goes (no `since` of one can be recovered in the other); the
    /// last value stays the channel's value.
    func restartStream() {
        state.withLock { state in
            if state.seq > 0 { statistics.recordStreamRestart() }
            state.epoch = StreamEpoch.make()
            state.history = []
        }
    }

    /// Merges messages read from the cluster's history into what this channel keeps (see ``Hub/seed``).
    func seed(epoch: String, lastSeq: UInt64, messages: [Message]) {
        state.withLock { state in
            if state.epoch != epoch {
                state.dropStream()
                state.epoch = epoch
            }
            let known = Set(state.history.map(\.seq))
            var merged = Array(state.history)
            for message in messages where !known.contains(message.seq) && (namespace.history > 0 || message.seq > (state.lastValue?.seq ?? 0)) {
                merged.append(.message(message, conflationKey: nil, namespace: namespace.name))
            }
            merged.sort { $0.seq < $1.seq }
            if namespace.history > 0 { state.history = Deque(merged.suffix(namespace.history)) }
            if namespace.lastValue, let newest = merged.last, newest.seq > (state.lastValue?.seq ?? 0) { state.lastValue = newest }
            state.seq = max(state.seq, lastSeq, merged.last?.seq ?? 0)
            // Held for `channel-ttl-ms` like a publish's stream (a stream started for a subscriber that then never
            // came is freed then).
            retained(&state)
        }
    }

    /// The channel kept a message: its retention runs from now (retaining namespaces only).
    private func retained(_ state: inout State) {
        guard namespace.retainsMessages else { return }
        state.lastPublish = .now()
        guard !state.retentionTimerArmed else { return }
        state.retentionTimerArmed = true
        scheduleRetentionCheck(in: retention)
    }

    private func scheduleRetentionCheck(in delay: TimeAmount) {
        scheduler.scheduleTask(in: delay) { [self] in
            let due = state.withLock { state -> Bool in
                guard let last = state.lastPublish, !state.isClosed else {
                    state.retentionTimerArmed = false
                    return false
                }
                let remaining = last + retention - .now()
                if remaining > .zero {
                    scheduleRetentionCheck(in: remaining)
                    return false
                }
                state.retentionTimerArmed = false
                return true
            }
            if due { collect(self) }
        }
    }

    /// Called by the hub (its table locked) when the retention ran out or a window closed: drops the retained
    /// stream when its time is up and nobody listens, and says whether the channel is now unused (closed).
    func expire() -> Bool {
        state.withLock { closeIfUnused(&$0) }
    }

    /// Drops the retained stream if nobody listens and its retention ran out, then closes the channel if it is
    /// left unused. Lock held.
    private func closeIfUnused(_ state: inout State) -> Bool {
        guard !state.isClosed else { return true }
        if state.subscribers.isEmpty, let last = state.lastPublish, last + retention <= .now() { state.dropStream() }
        if state.isUnused { state.isClosed = true }
        return state.isClosed
    }

    /// Keeps `delivery` (history, last value) and queues it for every subscriber and extra recipient. Lock held.
    private func distribute(_ delivery: Delivery, extraRecipients: [any Subscriber], state: inout State) -> Hub.PublishResult {
        if namespace.history > 0 {
            if state.history.count == namespace.history { state.history.removeFirst() }
            state.history.append(delivery)
        }
        if namespace.lastValue { state.lastValue = delivery }
        retained(&state)
        state.subscribers.deliver(delivery)
        var recipients = state.subscribers.count
        for extra in extraRecipients where !state.subscribers.contains(extra) {
            extra.deliver(delivery)
            recipients += 1
        }
        statistics.recordDelivered(namespace: namespace.name, recipients: recipients)
        return Hub.PublishResult(seq: delivery.seq, recipients: recipients, held: false)
    }

    /// The outcome of adding a subscriber.
    enum SubscribeOutcome {
        case subscribed
        case alreadySubscribed
        /// The hub dropped this channel meanwhile: look it up again.
        case closed
    }

    /// Adds `subscriber`; queues `reply(recovered, epoch)` and then the replay or last value, all under the lock.
    ///
    /// `since` is recovered (SPEC §5) only when it names a position in the current stream: its `epoch`, when
    /// given, is the current one, it is not ahead of the stream, and every later message is still held.
    func subscribe(
        _ subscriber: any Subscriber,
        since: UInt64?,
        epoch: String?,
        reply: (_ recovered: Bool?, _ epoch: String) -> Delivery
    ) -> SubscribeOutcome {
        state.withLock { state in
            if state.isClosed { return .closed }
            let current = state.epoch ?? StreamEpoch.make()
            state.epoch = current
            guard state.subscribers.insert(subscriber, after: state.seq) else {
                subscriber.deliver(reply(since.map { _ in true }, current))
                return .alreadySubscribed
            }
            guard let since else {
                subscriber.deliver(reply(nil, current))
                if let last = state.lastValue { subscriber.deliver(last) }
                return .subscribed
            }
            let missed = state.recovery(since: since, epoch: epoch)
            subscriber.deliver(reply(missed != nil, current))
            if let missed {
                for delivery in missed { subscriber.deliver(delivery) }
            } else if let last = state.lastValue {
                subscriber.deliver(last)
            }
            return .subscribed
        }
    }

    /// What the channel holds, read without subscribing (the history endpoint): the current stream's epoch and
    /// last `seq`, and, with `since`, whether that position is recovered (the rule of ``subscribe``) with the
    /// messages after it; otherwise, or when not recovered, every message held (a fresh start).
    func history(since: UInt64?, epoch: String?) -> Hub.History {
        state.withLock { state in
            let missed = since.flatMap { state.recovery(since: $0, epoch: epoch) }
            let messages = (missed ?? Array(state.history)).map(\.payload)
            return Hub.History(epoch: state.epoch, seq: state.seq, recovered: since.map { _ in missed != nil }, messages: messages)
        }
    }

    /// Removes `subscriber`; the channel closes when it is left unused, its retention run out included.
    func unsubscribe(_ subscriber: any Subscriber) -> (removed: Bool, closed: Bool) {
        state.withLock { state in
            let removed = state.subscribers.remove(subscriber)
            return (removed, closeIfUnused(&state))
        }
    }

    var subscriberCount: Int { state.withLock { $0.subscribers.count } }
}
