import DequeModule
import NIOCore
import Synchronization

/// A thread-safe queue of events with an awaiting, time-bounded `take`.
final class Mailbox<Item: Sendable>: Sendable {
    private struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Item, any Error>
    }

    private struct State {
        var items: Deque<Item> = []
        var waiters: Deque<Waiter> = []
        var finished = false
        var nextId: UInt64 = 0
    }

    private let state = Mutex(State())
    private let eventLoop: any EventLoop

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func put(_ item: Item) {
        let waiter: Waiter? = state.withLock { state in
            if let waiter = state.waiters.popFirst() { return waiter }
            state.items.append(item)
            return nil
        }
        waiter?.continuation.resume(returning: item)
    }

    /// No more items will come: waiters and later takes fail with ``WebSocketTestClientError/closed``.
    func finish() {
        let waiters: Deque<Waiter> = state.withLock { state in
            state.finished = true
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.continuation.resume(throwing: WebSocketTestClientError.closed) }
    }

    func take(timeout: Duration) async throws -> Item {
        try await withCheckedThrowingContinuation { continuation in
            let result: Result<Item, any Error>? = state.withLock { state in
                if let item = state.items.popFirst() { return .success(item) }
                if state.finished { return .failure(WebSocketTestClientError.closed) }
                let id = state.nextId
                state.nextId += 1
                state.waiters.append(Waiter(id: id, continuation: continuation))
                eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000 + Int64(timeout.components.attoseconds / 1_000_000_000))) {
                    self.expire(id)
                }
                return nil
            }
            if let result { continuation.resume(with: result) }
        }
    }

    private func expire(_ id: UInt64) {
        let waiter: Waiter? = state.withLock { state in
            guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return state.waiters.remove(at: index)
        }
        waiter?.continuation.resume(throwing: WebSocketTestClientError.timedOut)
    }
}

/// Failures of the test client.
public enum WebSocketTestClientError: Error, Sendable, Equatable {
    case timedOut
    case closed
    case badResponse(String)
}
