import Synchronization

/// The node's open WebSocket connections by id, for the admin API and shutdown.
public final class ConnectionRegistry: Sendable {
    private let byId = Mutex<[String: WebSocketConnection]>([:])

    public init() {}

    func add(_ connection: WebSocketConnection) {
        byId.withLock { $0[connection.id] = connection }
    }

    func remove(_ connection: WebSocketConnection) {
        byId.withLock { _ = $0.removeValue(forKey: connection.id) }
    }

    /// The connection with this id, if open.
    public func connection(id: String) -> WebSocketConnection? {
        byId.withLock { $0[id] }
    }

    /// Number of open connections.
    public var count: Int { byId.withLock { $0.count } }
}
