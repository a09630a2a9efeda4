import DequeModule
import NIOCore
import Synchronization
import SwitchboardCore

/// A connection's bounded outbound queue (SPEC §5). Any thread may push; the connection's event loop drains.
///
/// Frames wait here only while the socket is not writable; `limit` bounds the bytes held so a client
/// that stops reading is found out (slow consumer) instead of growing memory.
final class Outbox: Sendable {
    /// What a push asks of the caller.
    enum PushResult {
        /// Queued; a drain is already scheduled.
        case queued
        /// Queued; the caller must schedule a drain on the event loop.
        case needsDrain
        /// The bound was hit: the connection is a slow consumer.
        case overflow
        /// The connection is closing; dropped.
        case closed
    }

    private struct State {
        var frames: Deque<ByteBuffer> = []
        var bytes = 0
        var drainScheduled = false
        var closed = false
    }

    private let limit: Int
    private let state = Mutex(State())

    init(limit: Int) {
        self.limit = limit
    }

    func push(_ frame: ByteBuffer) -> PushResult {
        state.withLock { state in
            guard !state.closed else { return .closed }
            guard state.bytes + frame.readableBytes <= limit else {
                state.closed = true
                state.frames.removeAll()
                state.bytes = 0
                return .overflow
            }
            state.frames.append(frame)
            state.bytes += frame.readableBytes
            if state.drainScheduled { return .queued }
            state.drainScheduled = true
            return .needsDrain
        }
    }

    /// Takes queued frames while `canWrite` allows; clears the drain flag when the queue is empty.
    func drain(while canWrite: () -> Bool, _ write: (ByteBuffer) -> Void) {
        while true {
            let frame: ByteBuffer? = state.withLock { state in
                guard canWrite(), let frame = state.frames.popFirst() else {
                    state.drainScheduled = !state.frames.isEmpty && !state.closed
                    return nil
                }
                state.bytes -= frame.readableBytes
                return frame
            }
            guard let frame else { return }
            write(frame)
        }
    }

    /// Refuses further frames and drops what is queued.
    func close() {
        state.withLock { state in
            state.closed = true
            state.frames.removeAll()
            state.bytes = 0
        }
    }
}
