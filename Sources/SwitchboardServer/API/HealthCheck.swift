import NIOCore

/// Checks the node can still do work: every event loop must run a task promptly.
enum HealthCheck {
    /// How many of `group`'s event loops did not run a no-op task within `limit`.
    ///
    /// Answers within `limit` whatever the loops do: a stuck loop is counted, never waited for (a task on it
    /// cannot be cancelled, so nothing here awaits one).
    static func unresponsiveLoops(of group: any EventLoopGroup, within limit: Duration) async -> Int {
        let loops = Array(group.makeIterator())
        let (answers, answer) = AsyncStream.makeStream(of: Void.self)
        for loop in loops { loop.execute { answer.yield() } }
        return await withTaskGroup(of: Void.self) { timer in
            timer.addTask {
                try? await Task.sleep(for: limit)
                answer.finish()
            }
            var pending = loops.count
            for await _ in answers {
                pending -= 1
                if pending == 0 { break }
            }
            timer.cancelAll()
            answer.finish()
            return pending
        }
    }

    /// The overall status of SPEC §6 from the number of loops that did not answer in time.
    static func status(unresponsiveLoops slow: Int, of count: Int) -> Status {
        slow == 0 ? .ok : (slow < count ? .degraded : .unhealthy)
    }

    /// `ok` and `degraded` answer 200, `unhealthy` 503 (SPEC §11).
    enum Status: String {
        case ok, degraded, unhealthy
    }
}
