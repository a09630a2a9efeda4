import NIOCore

/// Runs Swift tasks that prefer it on one event loop.
///
/// An HTTP connection's task reads requests from, and writes responses to, a channel on this loop. On the
/// global executor every request crossed threads four times (loop to worker and back, for the request and
/// for the response), and those hops were most of a small request's CPU; preferring the channel's own loop
/// keeps the whole exchange on one thread. NIO 2.101 has no `TaskExecutor` for its loops, hence this adapter.
final class LoopTaskExecutor: TaskExecutor {
    let eventLoop: any EventLoop

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
