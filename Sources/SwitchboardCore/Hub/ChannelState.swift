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
final class ChannelState: Sendable {
    let name: String
    let namespace: Namespace
    private let scheduler: any EventLoop
    private let clock: @Sendable () -> Int64
    private let statistics: NodeStatistics

    private struct State {
        var subscribers = ChannelMembers()
        var seq: UInt64 = 0
        var history: Deque<Delivery> = []
        var lastValue: Delivery?
        var throttle: Throttle?
        /// Set once the hub has dropped this channel; a late subscriber must look it up again.
        var isClosed = false
    }

    private let state: Mutex<State>

    init(
        name: String, namespace: Namespace, scheduler: any EventLoop, statistics: NodeStatistics,
        clock: @escaping @Sendable () -> Int64
    ) {
        self.name = name
        self.namespace = namespace
        self.scheduler = scheduler
        self.statistics = statistics
        self.clock = clock
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
        state.withLock { state in
            guard let (batch, keepOpen) = state.throttle?.windowEnded(window) else { return }
            for publication in batch { _ = deliver(publication, extraRecipients: [], state: &state) }
            if keepOpen { scheduleWindowEnd(window) }
        }
    }

    /// Assigns the next `seq`, encodes once and queues the same bytes for every recipient. Lock held.
    private func deliver(_ publication: Publication, extraRecipients: [any Subscriber], state: inout State) -> Hub.PublishResult {
        state.seq += 1
        let delivery = Delivery.message(
            seq: state.seq, payload: publication.encode(seq: state.seq, timestampMs: clock()),
            conflationKey: conflationKey(of: publication.key), namespace: namespace.name)
        return distribute(delivery, extraRecipients: extraRecipients, state: &state)
    }

    private func conflationKey(of key: String?) -> String? {
        namespace.conflate ? key.map { "\(name)\u{0}\($0)" } : nil
    }

    /// A message a broker sequenced elsewhere (cluster mode): `payload` is the complete message JSON with its
    /// `seq`. Kept and fanned out like a local publish; a `seq` at or below the channel's last is ignored
    /// (the broker hands each on once, in order, so that is only a late duplicate).
    func deliverSequenced(seq: UInt64, payload: ByteBuffer, key: String?, extraRecipients: [any Subscriber]) -> Int {
        state.withLock { state in
            guard seq > state.seq else { return 0 }
            state.seq = seq
            let delivery = Delivery.message(seq: seq, payload: payload, conflationKey: conflationKey(of: key), namespace: namespace.name)
            return distribute(delivery, extraRecipients: extraRecipients, state: &state).recipients
        }
    }

    /// Merges messages read from the cluster's history into what this channel keeps (see ``Hub/seed``).
    func seed(lastSeq: UInt64, messages: [(seq: UInt64, payload: ByteBuffer)]) {
        state.withLock { state in
            let known = Set(state.history.map(\.seq))
            var merged = Array(state.history)
            for (seq, payload) in messages where !known.contains(seq) && (namespace.history > 0 || seq > (state.lastValue?.seq ?? 0)) {
                merged.append(.message(seq: seq, payload: payload, conflationKey: nil, namespace: namespace.name))
            }
            merged.sort { $0.seq < $1.seq }
            if namespace.history > 0 { state.history = Deque(merged.suffix(namespace.history)) }
            if namespace.lastValue, let newest = merged.last, newest.seq > (state.lastValue?.seq ?? 0) { state.lastValue = newest }
            state.seq = max(state.seq, lastSeq, merged.last?.seq ?? 0)
        }
    }

    /// Keeps `delivery` (history, last value) and queues it for every subscriber and extra recipient. Lock held.
    private func distribute(_ delivery: Delivery, extraRecipients: [any Subscriber], state: inout State) -> Hub.PublishResult {
        if namespace.history > 0 {
            if state.history.count == namespace.history { state.history.removeFirst() }
            state.history.append(delivery)
        }
        if namespace.lastValue { state.lastValue = delivery }
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

    /// Adds `subscriber`; queues `reply(recovered)` and then the replay or last value, all under the lock.
    func subscribe(
        _ subscriber: any Subscriber,
        since: UInt64?,
        reply: (_ recovered: Bool?) -> Delivery
    ) -> SubscribeOutcome {
        state.withLock { state in
            if state.isClosed { return .closed }
            guard state.subscribers.insert(subscriber, after: state.seq) else {
                subscriber.deliver(reply(since.map { _ in true }))
                return .alreadySubscribed
            }
            guard let since else {
                subscriber.deliver(reply(nil))
                if let last = state.lastValue { subscriber.deliver(last) }
                return .subscribed
            }
            // Recovered when every message after `since` is still held (or there is none).
            let missed = state.history.filter { $0.seq > since }
            let recovered = since >= state.seq || missed.first?.seq == since + 1
            subscriber.deliver(reply(recovered))
            if recovered {
                for delivery in missed { subscriber.deliver(delivery) }
            } else if let last = state.lastValue {
                subscriber.deliver(last)
            }
            return .subscribed
        }
    }

    /// Removes `subscriber`; the channel closes when it is left empty and retains nothing.
    func unsubscribe(_ subscriber: any Subscriber) -> (removed: Bool, closed: Bool) {
        state.withLock { state in
            let removed = state.subscribers.remove(subscriber)
            if state.subscribers.isEmpty && !namespace.retainsMessages && (state.throttle?.isIdle ?? true) {
                state.isClosed = true
            }
            return (removed, state.isClosed)
        }
    }

    var subscriberCount: Int { state.withLock { $0.subscribers.count } }
}
