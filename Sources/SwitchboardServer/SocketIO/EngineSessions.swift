import Synchronization

/// The node's open Engine.IO sessions by `sid`, for polling requests and upgrades to find theirs, and how
/// many of them have not been admitted by a CONNECT yet (stats' `connections.awaitingConnect`).
final class EngineSessions: Sendable {
    private let sessions = Mutex<[String: EngineConnection]>([:])
    private let unadmitted = Atomic<Int>(0)

    /// A session opened by its handshake (not admitted yet).
    func add(_ connection: EngineConnection) {
        sessions.withLock { $0[connection.sid] = connection }
        unadmitted.add(1, ordering: .relaxed)
    }

    /// A session's CONNECT was admitted.
    func admitted(_ connection: EngineConnection) {
        unadmitted.subtract(1, ordering: .relaxed)
    }

    /// A session ended; `wasAdmitted`: its CONNECT had been admitted.
    func remove(_ connection: EngineConnection, wasAdmitted: Bool) {
        sessions.withLock { sessions in
            if sessions[connection.sid] === connection { sessions[connection.sid] = nil }
        }
        if !wasAdmitted { unadmitted.subtract(1, ordering: .relaxed) }
    }

    /// Sessions that did the handshake and have not been admitted by a CONNECT.
    var awaitingConnect: Int { unadmitted.load(ordering: .relaxed) }

    func session(sid: String) -> EngineConnection? {
        sessions.withLock { $0[sid] }
    }

    var all: [EngineConnection] { sessions.withLock { Array($0.values) } }

    var count: Int { sessions.withLock { $0.count } }
}
