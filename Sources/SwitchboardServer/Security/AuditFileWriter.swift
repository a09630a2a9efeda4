import DequeModule
import Dispatch
import Foundation
import NIOCore
import Synchronization

/// Appends audit lines to the `--audit-log` file off the event loops (SPEC §13): the loop that saw an event
/// only queues its line; a thread of the writer's own writes them in order (a file write may block, so it
/// runs neither on an event loop nor on Swift's cooperative pool). The queue is bounded: when the disk cannot
/// keep up, new lines are dropped and counted rather than held without limit or waited for.
final class AuditFileWriter: Sendable {
    /// Lines waiting at most.
    static let defaultCapacity = 4_096

    /// What the writer and its thread share (the thread never holds the writer, whose deinit stops it).
    private final class Queue: Sendable {
        struct State {
            var lines: Deque<ByteBuffer> = []
            var isClosed = false
        }

        let state = Mutex(State())
        let wakeUp = DispatchSemaphore(value: 0)
        let queued = Atomic<Int>(0)
        let written = Atomic<Int>(0)
        let dropped = Atomic<Int>(0)
    }

    /// The file handle, used by the writing thread only.
    private final class File: @unchecked Sendable {
        let handle: FileHandle
        init(_ handle: FileHandle) { self.handle = handle }
    }

    private let queue = Queue()
    private let capacity: Int
    private let onDrop: @Sendable () -> Void

    /// - Parameter onDrop: called for each line dropped (counted in stats and metrics).
    init(handle: FileHandle, capacity: Int = AuditFileWriter.defaultCapacity, onDrop: @escaping @Sendable () -> Void = {}) {
        self.capacity = capacity
        self.onDrop = onDrop
        let queue = self.queue
        let file = File(handle)
        Thread.detachNewThread {
            while true {
                queue.wakeUp.wait()
                let (lines, closed) = queue.state.withLock { state in
                    defer { state.lines.removeAll() }
                    return (Array(state.lines), state.isClosed)
                }
                for line in lines {
                    try? file.handle.write(contentsOf: Data(line.readableBytesView))
                    queue.written.add(1, ordering: .releasing)
                }
                if closed { return }
            }
        }
    }

    deinit {
        queue.state.withLock { $0.isClosed = true }
        queue.wakeUp.signal()
    }

    /// Queues `line`; false when the queue was full and it was dropped.
    @discardableResult
    func append(_ line: ByteBuffer) -> Bool {
        let accepted = queue.state.withLock { state -> Bool in
            guard state.lines.count < capacity else { return false }
            state.lines.append(line)
            return true
        }
        guard accepted else {
            queue.dropped.add(1, ordering: .relaxed)
            onDrop()
            return false
        }
        queue.queued.add(1, ordering: .relaxed)
        queue.wakeUp.signal()
        return true
    }

    /// Lines dropped because the queue was full.
    var dropped: Int { queue.dropped.load(ordering: .relaxed) }

    /// Waits until every line queued so far is in the file (tests, shutdown).
    func flushed() async {
        let target = queue.queued.load(ordering: .relaxed)
        while queue.written.load(ordering: .acquiring) < target { try? await Task.sleep(for: .milliseconds(2)) }
    }
}
