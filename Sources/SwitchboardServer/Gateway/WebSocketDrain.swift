import NIOCore
import ServiceLifecycle

/// Holds graceful shutdown open until every WebSocket connection has closed (SPEC §1: close 1001, then exit).
///
/// The HTTP server stops accepting and asks each connection to quiesce (our handler answers with close 1001),
/// but it does not wait for upgraded connections, which hold no task of their own. Listed first among the
/// application's services, this one is shut down last, after the server, and waits for the close handshakes
/// (bounded by ``WebSocketTransport/closeGrace`` and the service group's own shutdown limit).
struct WebSocketDrain: Service {
    let node: Node
    static let pollInterval: Duration = .milliseconds(20)

    func run() async throws {
        do {
            try await gracefulShutdown()
        } catch {
            return  // cancelled: nothing to wait for
        }
        // Polling Socket.IO sessions have no channel for the server to quiesce: end their transport (SPEC §9:
        // the client reconnects, to another node).
        for session in node.gateway.engineSessions.all {
            session.eventLoop.execute { session.end(code: .goingAway, reason: "server shutting down") }
        }
        let deadline = ContinuousClock.now + .nanoseconds(WebSocketTransport.closeGrace.nanoseconds) + .seconds(1)
        while node.connections.count > 0 && ContinuousClock.now < deadline {
            do {
                try await Task.sleep(for: Self.pollInterval)
            } catch {
                return  // the service group's shutdown limit passed
            }
        }
    }
}

extension Channel {
    /// Closes the channel `grace` from now unless it closed before. The timer holds the channel weakly and is
    /// cancelled when the channel closes, so a closed connection is freed at once rather than kept, with its
    /// buffers, for the rest of the grace (a flood of refused connections would otherwise hold thousands).
    func close(after grace: TimeAmount) {
        let timer = eventLoop.scheduleTask(in: grace) { [weak self] in self?.close(promise: nil) }
        closeFuture.whenComplete { _ in timer.cancel() }
    }
}
