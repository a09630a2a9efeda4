import NIOCore

/// The connections of one event loop that have not finished their first request or upgrade yet, each closed
/// once `request-timeout-ms` passes without it (sockets that connect and send nothing, or half a request).
///
/// Every connection of a node has the same timeout, so deadlines fall in arrival order: a line swept by one
/// timer per loop replaces a scheduled task per connection. That task cost NIO's scheduling, a callback to
/// cancel it and, for the cancel, a linear search of the loop's timer heap, which holds one entry per
/// connection still in its first request: about 3 % of the server's CPU in a connect storm.
///
/// Event-loop confined: ``watch(_:)`` is called on the loop, and the sweep runs on it.
final class RequestDeadlines: Sendable {
    /// One connection's first request: its channel until it is answered (``settle()``) or timed out.
    final class Watch {
        fileprivate var channel: (any Channel)?
        fileprivate let deadline: NIODeadline

        fileprivate init(channel: any Channel, deadline: NIODeadline) {
            self.channel = channel
            self.deadline = deadline
        }

        /// The first request ended (answered, upgraded, or the connection closed): the timeout no longer applies.
        func settle() {
            channel = nil
        }
    }

    private let eventLoop: any EventLoop
    private let timeout: TimeAmount
    /// Watches in deadline order; settled ones leave when they reach the front. A sweep is scheduled exactly
    /// while the line is not empty: the first watch schedules one, and a sweep that leaves some schedules the next.
    private let line: NIOLoopBoundBox<CircularBuffer<Watch>>

    init(eventLoop: any EventLoop, timeout: TimeAmount) {
        self.eventLoop = eventLoop
        self.timeout = timeout
        line = NIOLoopBoundBox.makeBoxSendingValue(CircularBuffer(), eventLoop: eventLoop)
    }

    /// Starts `channel`'s timeout (on the loop).
    func watch(_ channel: any Channel) -> Watch {
        let watch = Watch(channel: channel, deadline: .now() + timeout)
        let sweepScheduled = !line.value.isEmpty
        // Settled watches at the front go now, so the line holds about one timeout's worth of unanswered ones
        // (the sweep already scheduled, if any, finds the new front).
        while let first = line.value.first, first.channel == nil { line.value.removeFirst() }
        line.value.append(watch)
        if !sweepScheduled { schedule(at: watch.deadline) }
        return watch
    }

    private func schedule(at deadline: NIODeadline) {
        eventLoop.scheduleTask(deadline: deadline) { self.sweep() }
    }

    /// Closes every connection whose deadline passed, then waits for the next deadline.
    private func sweep() {
        let now = NIODeadline.now()
        while let first = line.value.first, first.channel == nil || first.deadline <= now {
            line.value.removeFirst()
            // Settled first: closing fails the connection's negotiation, whose callback settles it too.
            let channel = first.channel
            first.settle()
            channel?.close(promise: nil)
        }
        if let next = line.value.first { schedule(at: next.deadline) }
    }
}
