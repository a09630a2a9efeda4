import NIOCore
import Synchronization

/// Drains connections' outboxes in one task per event loop instead of one task per connection.
///
/// A publish to N subscribers on one event loop marks up to N connections dirty but schedules a single
/// `execute` for the loop, which then drains every dirty connection: one hop and one wakeup per loop per
/// burst of publishes, not per recipient.
final class DrainScheduler: Sendable {
    private struct State {
        var dirty: [WebSocketConnection] = []
        var scheduled = false
    }

    private let eventLoop: any EventLoop
    private let state = Mutex(State())

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Queues `connection` for draining on the loop (any thread).
    func markDirty(_ connection: WebSocketConnection) {
        let schedule = state.withLock { state in
            state.dirty.append(connection)
            defer { state.scheduled = true }
            return !state.scheduled
        }
        if schedule { eventLoop.execute { self.run() } }
    }

    private func run() {
        let dirty = state.withLock { state in
            state.scheduled = false
            defer { state.dirty.removeAll(keepingCapacity: true) }
            return state.dirty
        }
        for connection in dirty { connection.drainOutbox() }
    }
}

/// One ``DrainScheduler`` per event loop of the group.
final class DrainSchedulers: Sendable {
    private let schedulers: [ObjectIdentifier: DrainScheduler]

    init(group: any EventLoopGroup) {
        schedulers = Dictionary(uniqueKeysWithValues: group.makeIterator().map { loop in
            (ObjectIdentifier(loop), DrainScheduler(eventLoop: loop))
        })
    }

    /// The scheduler of `loop`, or a new one for a loop outside the group.
    func scheduler(for loop: any EventLoop) -> DrainScheduler {
        schedulers[ObjectIdentifier(loop)] ?? DrainScheduler(eventLoop: loop)
    }
}
