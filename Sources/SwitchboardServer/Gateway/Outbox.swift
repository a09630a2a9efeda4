import NIOCore
import Synchronization
import SwitchboardCore

/// A connection's bounded outbound queue (SPEC §5). Any thread may push; the connection's event loop drains.
///
/// Deliveries wait here only while the socket is not writable. `limit` bounds the bytes held: when a push
/// would pass it, a conflated message replaces the queued one with the same channel and key; anything
/// else marks the connection a slow consumer.
final class Outbox: Sendable {
    /// What a push asks of the caller.
    enum PushResult: Equatable {
        /// Queued; a drain is already scheduled.
        case queued
        /// Queued; the caller must schedule a drain on the event loop.
        case needsDrain
        /// Queued in place of an older message of `namespace` with the same key (a drain is already scheduled).
        case replaced(namespace: String)
        /// The bound was hit: the connection is a slow consumer and the outbox is now closed; `discarded`
        /// counts the messages dropped with it, by namespace.
        case overflow(discarded: [String: Int])
        /// The connection is closing; dropped.
        case closed
    }

    private struct State {
        var queue: [Delivery] = []
        var bytes = 0
        var peakBytes = 0
        var replaced = 0
        var drainScheduled = false
        var closed = false
    }

    let limit: Int
    private let state = Mutex(State())

    init(limit: Int) {
        self.limit = limit
    }

    func push(_ delivery: Delivery) -> PushResult {
        state.withLock { state in
            guard !state.closed else { return .closed }
            let size = delivery.frame.readableBytes
            var replacedNamespace: String?
            if state.bytes + size > limit {
                // SPEC §5: a conflated channel replaces its queued value for the same key. The old entry is
                // removed and the new one appended, so the channel's queued messages stay in seq order.
                guard let key = delivery.conflationKey,
                    let index = state.queue.firstIndex(where: { $0.conflationKey == key }),
                    state.bytes - state.queue[index].frame.readableBytes + size <= limit
                else {
                    var discarded: [String: Int] = [:]
                    for message in state.queue where message.isMessage { discarded[message.namespace ?? "", default: 0] += 1 }
                    if delivery.isMessage { discarded[delivery.namespace ?? "", default: 0] += 1 }
                    state.closed = true
                    state.queue.removeAll()
                    state.bytes = 0
                    return .overflow(discarded: discarded)
                }
                state.bytes -= state.queue.remove(at: index).frame.readableBytes
                state.replaced += 1
                replacedNamespace = delivery.namespace ?? ""
            }
            state.queue.append(delivery)
            state.bytes += size
            state.peakBytes = max(state.peakBytes, state.bytes)
            if let replacedNamespace { return .replaced(namespace: replacedNamespace) }
            if state.drainScheduled { return .queued }
            state.drainScheduled = true
            return .needsDrain
        }
    }

    /// Moves every queued delivery into `spare` (which must be empty) by swapping storage, so a drain
    /// allocates nothing; clears the drain flag. The caller empties `spare` again after writing.
    func takeAll(into spare: inout [Delivery]) {
        assert(spare.isEmpty, "the drain's spare queue must be emptied before the next drain")
        state.withLock { state in
            swap(&state.queue, &spare)
            state.bytes = 0
            state.drainScheduled = false
        }
    }

    /// Refuses further deliveries and keeps what is queued, for a last drain.
    func seal() {
        state.withLock { $0.closed = true }
    }

    /// Whether deliveries wait to be drained.
    var hasQueued: Bool { state.withLock { !$0.queue.isEmpty } }

    /// Refuses further deliveries and drops what is queued.
    func close() {
        state.withLock { state in
            state.closed = true
            state.queue.removeAll()
            state.bytes = 0
        }
    }

    /// The most bytes ever held at once (never above ``limit``), how many queued messages were replaced,
    /// and whether the outbox is closed.
    var statistics: (peakBytes: Int, replaced: Int, closed: Bool) { state.withLock { ($0.peakBytes, $0.replaced, $0.closed) } }
}

extension Outbox.PushResult {
    /// Applies SPEC §5 to what a push did: `drain` schedules the drain it asks for; replaced and dropped
    /// messages are counted; an overflow ends the connection as a slow consumer (`overflow`, on the loop).
    func apply(statistics: NodeStatistics, drain: () -> Void, overflow: () -> Void) {
        switch self {
        case .queued, .closed:
            break
        case .needsDrain:
            drain()
        case .replaced(let namespace):
            statistics.recordDropped(namespace: namespace, reason: .slowConsumerConflated)
        case .overflow(let discarded):
            for (namespace, count) in discarded {
                statistics.recordDropped(namespace: namespace, reason: .slowConsumer, count: count)
            }
            statistics.recordSlowConsumerClose()
            overflow()
        }
    }
}
