import DequeModule
import NIOCore
import Synchronization

/// One live channel: its subscribers, its `seq` counter and what it retains (history, last value).
///
/// Publishing and subscribing hold this channel's lock while they enqueue, so every subscriber sees the
/// channel's messages in `seq` order and a replay never interleaves with live messages (SPEC §5).
final class ChannelState: Sendable {
    let name: String
    let namespace: Namespace

    private struct State {
        var subscribers: [ObjectIdentifier: any Subscriber] = [:]
        var seq: UInt64 = 0
        var history: Deque<Delivery> = []
        var lastValue: Delivery?
        /// Set once the hub has dropped this channel; a late subscriber must look it up again.
        var isClosed = false
    }

    private let state = Mutex(State())

    init(name: String, namespace: Namespace) {
        self.name = name
        self.namespace = namespace
    }

    /// Assigns the next `seq`, encodes once and queues the same bytes for every subscriber.
    func publish(_ publication: Publication, timestampMs: Int64) -> (seq: UInt64, recipients: Int) {
        state.withLock { state in
            state.seq += 1
            let delivery = Delivery(seq: state.seq, payload: publication.encode(seq: state.seq, timestampMs: timestampMs))
            if namespace.history > 0 {
                if state.history.count == namespace.history { state.history.removeFirst() }
                state.history.append(delivery)
            }
            if namespace.lastValue { state.lastValue = delivery }
            for subscriber in state.subscribers.values {
                subscriber.deliver(delivery)
            }
            return (state.seq, state.subscribers.count)
        }
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
            let id = ObjectIdentifier(subscriber)
            if state.subscribers[id] != nil {
                subscriber.deliver(reply(since.map { _ in true }))
                return .alreadySubscribed
            }
            state.subscribers[id] = subscriber
            guard let since else {
                subscriber.deliver(reply(nil))
                if let last = state.lastValue { subscriber.deliver(last) }
                return .subscribed
            }
            // Recovered when every message after `since` is still held (or there is none).
            let missed = state.history.filter { $0.seq > since }
            let firstMissed = since + 1
            let recovered = since >= state.seq || missed.first?.seq == firstMissed
            subscriber.deliver(reply(recovered))
            if recovered {
                for delivery in missed { subscriber.deliver(delivery) }
            } else if let last = state.lastValue {
                subscriber.deliver(last)
            }
            return .subscribed
        }
    }

    /// Removes `subscriber`; returns true when the channel is now empty and retains nothing, and so is closed.
    func unsubscribe(_ subscriber: any Subscriber) -> (removed: Bool, closed: Bool) {
        state.withLock { state in
            let removed = state.subscribers.removeValue(forKey: ObjectIdentifier(subscriber)) != nil
            if state.subscribers.isEmpty && !namespace.retainsMessages {
                state.isClosed = true
            }
            return (removed, state.isClosed)
        }
    }

    var subscriberCount: Int { state.withLock { $0.subscribers.count } }
}
