public import SwitchboardCore
import Synchronization

/// The node's open client connections (native and Socket.IO) by id and by user, for targeted and global messages, the admin
/// API and shutdown.
public final class ConnectionRegistry: Sendable {
    private struct Index {
        var byId: [String: any ClientConnection] = [:]
        var byUser: [String: [String: any ClientConnection]] = [:]
    }

    private let index = Mutex(Index())

    public init() {}

    func add(_ connection: any ClientConnection, userId: String?) {
        index.withLock { index in
            index.byId[connection.id] = connection
            if let userId { index.byUser[userId, default: [:]][connection.id] = connection }
        }
    }

    /// Moves a connection to another user after an in-band `auth`.
    func changeUser(_ connection: any ClientConnection, from oldUserId: String?, to newUserId: String?) {
        guard oldUserId != newUserId else { return }
        index.withLock { index in
            if let oldUserId { Self.remove(connection.id, of: oldUserId, from: &index) }
            if let newUserId { index.byUser[newUserId, default: [:]][connection.id] = connection }
        }
    }

    func remove(_ connection: any ClientConnection, userId: String?) {
        index.withLock { index in
            index.byId[connection.id] = nil
            if let userId { Self.remove(connection.id, of: userId, from: &index) }
        }
    }

    /// The connection with this id, if open.
    public func connection(id: String) -> (any ClientConnection)? {
        index.withLock { $0.byId[id] }
    }

    /// Every open connection of `userId`.
    public func connections(ofUser userId: String) -> [any ClientConnection] {
        index.withLock { Array(($0.byUser[userId] ?? [:]).values) }
    }

    /// Every open connection.
    public var all: [any ClientConnection] { index.withLock { Array($0.byId.values) } }

    /// Number of open connections.
    public var count: Int { index.withLock { $0.byId.count } }

    private static func remove(_ id: String, of userId: String, from index: inout Index) {
        index.byUser[userId]?[id] = nil
        if index.byUser[userId]?.isEmpty == true { index.byUser[userId] = nil }
    }
}

extension ConnectionRegistry: LocalRecipients {
    public func subscribers(ofUser userId: String) -> [any Subscriber] { connections(ofUser: userId) }
    public var allSubscribers: [any Subscriber] { all }
}
