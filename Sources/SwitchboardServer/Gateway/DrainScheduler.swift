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
        /// Socket.IO sessions (a second list, so the native one stays a list of one concrete class).
        var dirtySessions: [EngineConnection] = []
        var scheduled = false
    }

    private let eventLoop: any EventLoop
    private let batchDelay: TimeAmount
    private let statistics: NodeStatistics
    private let now = Mutex(Queue())
    private let delayed = Mutex(Queue())
    /// Only touched on `eventLoop` (the locks are never contended).
    private let batchFrames = Mutex(BatchFrameCache())
    private let gatherStorage = Mutex<ByteBuffer?>(nil)

    init(eventLoop: any EventLoop, batchDelay: TimeAmount, statistics: NodeStatistics) {
        self.statistics = statistics
        self.eventLoop = eventLoop
        self.batchDelay = batchDelay
    }

    /// Queues `connection` for draining on the loop (any thread), after the batch delay when `batched`.
    func markDirty(_ connection: WebSocketConnection, batched: Bool = false) {
        if batched && batchDelay > .zero {
            if delayed.withLock({ Self.enqueue(connection, into: &$0.dirty, scheduled: &$0.scheduled) }) {
                eventLoop.scheduleTask(in: batchDelay) { self.run(delayed: true) }
            }
        } else {
            if now.withLock({ Self.enqueue(connection, into: &$0.dirty, scheduled: &$0.scheduled) }) { eventLoop.execute { self.run(delayed: false) } }
        }
    }

    /// Queues a Socket.IO session for draining on the loop (any thread), with the native connections.
    func markDirty(_ session: EngineConnection) {
        if now.withLock({ Self.enqueue(session, into: &$0.dirtySessions, scheduled: &$0.scheduled) }) {
            eventLoop.execute { self.run(delayed: false) }
        }
    }

    /// Adds `element` to one of a queue's lists; true when the queue was idle (`scheduled` was false) and its run
    /// must be scheduled.
    private static func enqueue<Element>(_ element: Element, into list: inout [Element], scheduled: inout Bool) -> Bool {
        list.append(element)
        defer { scheduled = true }
        return !scheduled
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

    /// A buffer to gather one drain's frames in, reusing the loop's storage. On the loop.
    func takeGatherBuffer() -> GatherBuffer {
        let storage = gatherStorage.withLock { stored in
            defer { stored = nil }
            return stored
        }
        return GatherBuffer(storage: storage ?? ByteBuffer())
    }

    /// Keeps `frames`' storage for the next drain on the loop, unless it grew large.
    func returnGatherBuffer(_ frames: GatherBuffer) {
        let storage = frames.storage
        guard storage.capacity <= Self.gatherStorageLimit else { return }
        gatherStorage.withLock { $0 = storage }
    }

    /// Gather storage that grew past this (a backlog drained at once) is let go rather than kept per loop.
    static let gatherStorageLimit = 64 * 1024

    /// Connections drained before the loop is given back to I/O.
    static let sliceSize = 512
    /// The pause between slices. NIO runs every queued task before it polls for I/O again, so a drain that
    /// re-queued itself at once would keep reading (and answering HTTP requests) waiting until a broadcast to
    /// tens of thousands of connections is written; a due timer lets the loop poll between slices.
    static let slicePause: TimeAmount = .microseconds(50)

    private func run(delayed isDelayed: Bool) {
        guard !isDelayed else {
            drain(delayed.withLock { Self.takeAll(from: &$0) }[...])
            return
        }
        let (dirty, sessions) = now.withLock { queue in
            let sessions = queue.dirtySessions
            if !sessions.isEmpty { queue.dirtySessions.removeAll(keepingCapacity: true) }
            return (Self.takeAll(from: &queue), sessions)
        }
        drain(dirty[...])
        guard !sessions.isEmpty else { return }
        // The bytes of a whole run counted at once, as a lane counts a pass.
        var bytes = 0
        for session in sessions { bytes += session.drainOutbox(countingBytes: false) }
        statistics.recordBytesOut(bytes)
    }

    /// Drains a slice of `connections` and schedules the rest. A connection waiting in the rest keeps its drain
    /// flag, so its outbox only grows (in order) meanwhile and it is not queued twice.
    private func drain(_ connections: ArraySlice<WebSocketConnection>) {
        for connection in connections.prefix(Self.sliceSize) { connection.drainOutbox() }
        let rest = connections.dropFirst(Self.sliceSize)
        if !rest.isEmpty {
            eventLoop.scheduleTask(in: Self.slicePause) { self.drain(rest) }
        }
    }
}

/// The frames of one drain, gathered for one write. A lone frame is written as it is (no copy); two or
/// more are copied into one buffer, so a drain costs one `send` however many frames it carries.
struct GatherBuffer {
    private var lone: ByteBuffer?
    private(set) var storage: ByteBuffer

    init(storage: ByteBuffer) {
        self.storage = storage
        self.storage.clear()
    }

    mutating func append(_ frame: ByteBuffer) {
        // Frames are never empty, so nothing gathered yet means no lone frame and empty storage.
        if lone == nil && storage.readableBytes == 0 {
            lone = frame
            return
        }
        if let first = lone {
            storage.writeImmutableBuffer(first)
            lone = nil
        }
        storage.writeImmutableBuffer(frame)
    }

    /// Everything gathered, in order.
    var output: ByteBuffer { lone ?? storage }
    /// The bytes gathered.
    var bytes: Int { output.readableBytes }
}
