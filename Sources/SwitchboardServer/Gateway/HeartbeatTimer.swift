import NIOCore

/// Pings the WebSocket connections of one event loop from a single repeated task (SPEC §3 heartbeats).
///
/// A timer per connection costs a scheduled task, a closure and a promise each; here a connection costs one
/// dictionary entry. The interval is cut into `slices` ticks and each tick visits one slice, so pings are
/// spread over the interval rather than sent all at once. A connection joins the slice just visited, so its
/// first check comes one full interval later. The task runs only while the loop has connections.
///
/// `@unchecked Sendable`: every member is confined to `eventLoop`.
final class HeartbeatTimer: @unchecked Sendable {
    private static let sliceCount = 8

    private let eventLoop: any EventLoop
    private let tick: TimeAmount
    private var slices = [[ObjectIdentifier: WebSocketConnection]](repeating: [:], count: sliceCount)
    private var current = 0
    private var task: RepeatedTask?

    init(eventLoop: any EventLoop, interval: TimeAmount) {
        self.eventLoop = eventLoop
        self.tick = .nanoseconds(max(1, interval.nanoseconds / Int64(Self.sliceCount)))
    }

    func add(_ connection: WebSocketConnection) {
        eventLoop.assertInEventLoop()
        slices[current][ObjectIdentifier(connection)] = connection
        if task == nil {
            task = eventLoop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { [self] _ in visitNextSlice() }
        }
    }

    func remove(_ connection: WebSocketConnection) {
        eventLoop.assertInEventLoop()
        let id = ObjectIdentifier(connection)
        for index in slices.indices {
            if slices[index].removeValue(forKey: id) != nil { break }
        }
        if slices.allSatisfy(\.isEmpty) {
            task?.cancel()
            task = nil
        }
    }

    private func visitNextSlice() {
        current = (current + 1) % slices.count
        // A check may close its connection, which removes it from this slice: iterate a copy.
        let due = slices[current]
        for connection in due.values { connection.checkHeartbeat() }
    }
}
