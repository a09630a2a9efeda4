import NIOCore

/// Checks the node can still do work: every event loop must run a task promptly.
enum HealthCheck {
    /// How many of `group`'s event loops did not run a no-op task within `limit`.
    static func unresponsiveLoops(of group: any EventLoopGroup, within limit: Duration) async -> Int {
        await withTaskGroup(of: Bool.self) { tasks in
            for loop in group.makeIterator() {
                tasks.addTask {
                    await withTaskGroup(of: Bool.self) { race in
                        race.addTask { (try? await loop.submit {}.get()) != nil }
                        race.addTask {
                            try? await Task.sleep(for: limit)
                            return false
                        }
                        let answered = await race.next() ?? false
                        race.cancelAll()
                        return answered
                    }
                }
            }
            return await tasks.reduce(0) { $0 + ($1 ? 0 : 1) }
        }
    }
}
