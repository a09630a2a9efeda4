import NIOCore
import SwitchboardCore
import Synchronization

/// One channel's subscribers on one event loop (see ``FanoutLane``): a publish queues its delivery here once,
/// and the loop writes it to every member in one pass over ``LoopFanout``'s slots.
///
/// Messages are written in the order they were queued, each batch to every member before the next batch
/// starts. Lanes of `?batch=true` connections wait the batch delay before a pass and write what gathered as
/// one `batch` frame, built once for all members. A pass over many members is cut into slices with a pause
/// between them (as the drain scheduler does), so the loop still reads and answers requests during a
/// broadcast to tens of thousands.
final class ChannelLane: FanoutLane, Sendable {
    /// A member, and the `seq` current when it joined: it is due the messages numbered above it.
    struct Member {
        let id: UInt64
        let after: UInt64
    }

    private struct State {
        var members: [Member] = []
        var pending: [Delivery] = []
        /// A pass is scheduled or under way; it takes the next batch when it ends.
        var running = false
    }

    private let fanout: LoopFanout
    private let state = Mutex(State())

    init(fanout: LoopFanout) {
        self.fanout = fanout
    }

    func join(_ member: UInt64, after seq: UInt64) {
        state.withLock { $0.members.append(Member(id: member, after: seq)) }
    }

    /// A scan of the 16-byte members and a swap-remove: no index per member to keep in memory, and fast
    /// enough for disconnects one at a time.
    func leave(_ member: UInt64) -> Bool {
        state.withLock { state in
            if let index = state.members.lastIndex(where: { $0.id == member }) {
                state.members.swapAt(index, state.members.count - 1)
                state.members.removeLast()
            }
            return state.members.isEmpty
        }
    }

    func enqueue(_ delivery: Delivery) {
        let start = state.withLock { state in
            state.pending.append(delivery)
            defer { state.running = true }
            return !state.running
        }
        if start { fanout.schedulePass { self.writeNextBatch() } }
    }

    /// Takes everything queued and writes it to the current members.
    private func writeNextBatch() {
        let (deliveries, members) = state.withLock { state in
            defer { state.pending = [] }
            return (state.pending, state.members)
        }
        // A pass is only scheduled with something queued (by `enqueue` or `finishPass`); `finishPass` alone
        // decides when the run ends.
        guard !deliveries.isEmpty else { return finishPass() }
        write(fanout.batch(of: deliveries), to: members[...])
    }

    /// Ends the run when nothing was queued during the pass, otherwise schedules the next pass.
    private func finishPass() {
        let more = state.withLock { state in
            if state.pending.isEmpty { state.running = false }
            return state.running
        }
        if more { fanout.schedulePass { self.writeNextBatch() } }
    }

    /// Writes `batch` to a slice of `members`, then to the rest after a pause; then goes on to the next batch.
    private func write(_ batch: LaneBatch, to members: ArraySlice<Member>) {
        fanout.write(batch, to: members.prefix(DrainScheduler.sliceSize))
        let rest = members.dropFirst(DrainScheduler.sliceSize)
        if rest.isEmpty {
            fanout.recordLatency(of: batch)
            finishPass()
        } else {
            fanout.eventLoop.scheduleTask(in: DrainScheduler.slicePause) { self.write(batch, to: rest) }
        }
    }
}
