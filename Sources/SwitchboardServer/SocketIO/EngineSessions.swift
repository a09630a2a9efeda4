import Synchronization

/// The node's open Engine.IO sessions by `sid`, for polling requests and upgrades to find theirs.
final class EngineSessions: Sendable {
    private let sessions = Mutex<[String: EngineConnection]>([:])

    func add(_ connection: EngineConnection) {
        sessions.withLock { $0[connection.sid] = connection }
    }

    func remove(_ connection: EngineConnection) {
        sessions.withLock { sessions in
            if sessions[connection.sid] === connection { sessions[connection.sid] = nil }
        }
    }

    func session(sid: String) -> EngineConnection? {
        sessions.withLock { $0[sid] }
    }

    var all: [EngineConnection] { sessions.withLock { Array($0.values) } }

    var count: Int { sessions.withLock { $0.count } }
}
