import NIOCore
import SwitchboardCore
import Synchronization

/// Drains connections' outboxes in one task per event loop instead of one task per connection.
///
/// A publish to N subscribers on one event loop marks up to N connections dirty but schedules a single
/// `execute` for the loop, which then drains every dirty connection: one hop and one wakeup per loop per
/// burst of publishes, not per recipient. Connections that asked for batches (`?batch=true`) are drained
/// after `batchDelay` instead, so each write carries every message of that interval in one `batch` frame
/// (the write delay of Centrifugo's `write_delay` or Lightstreamer's `maxDelayMillis`).
final class DrainScheduler: Sendable {
    private struct Queue {
        var dirty: [WebSocketConnection] = []
        var scheduled = false
    }

    private let eventLoop: any EventLoop
    private let batchDelay: TimeAmount
    private let now = Mutex(Queue())
    private let delayed = Mutex(Queue())
    /// Only touched on `eventLoop` (the lock is never contended).
    private let batchFrames = Mutex(BatchFrameCache())

    init(eventLoop: any EventLoop, batchDelay: TimeAmount) {
        self.eventLoop = eventLoop
        self.batchDelay = batchDelay
    }

    /// Queues `connection` for draining on the loop (any thread), after the batch delay when `batched`.
    func markDirty(_ connection: WebSocketConnection, batched: Bool = false) {
        if batched && batchDelay > .zero {
            if delayed.withLock({ Self.enqueue(connection, into: &$0) }) {
                eventLoop.scheduleTask(in: batchDelay) { self.run(delayed: true) }
            }
        } else {
            if now.withLock({ Self.enqueue(connection, into: &$0) }) { eventLoop.execute { self.run(delayed: false) } }
        }
    }

    /// Adds `connection`; true when the queue was idle and its run must be scheduled.
    private static func enqueue(_ connection: WebSocketConnection, into queue: inout Queue) -> Bool {
        queue.dirty.append(connection)
        defer { queue.scheduled = true }
        return !queue.scheduled
    }

    private static func takeAll(from queue: inout Queue) -> [WebSocketConnection] {
        queue.scheduled = false
        defer { queue.dirty.removeAll(keepingCapacity: true) }
        return queue.dirty
    }

    /// The batch frame of `deliveries`, shared with the previous connection drained with the same messages. On the loop.
    func batchFrame(of deliveries: ArraySlice<Delivery>) -> ByteBuffer {
        batchFrames.withLock { $0.frame(of: deliveries) }
    }

    private func run(delayed isDelayed: Bool) {
        let dirty = isDelayed ? delayed.withLock { Self.takeAll(from: &$0) } : now.withLock { Self.takeAll(from: &$0) }
        for connection in dirty { connection.drainOutbox() }
    }
}
