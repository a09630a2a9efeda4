import Synchronization

/// Open HTTP connections per client IP, for `max-http-connections-per-ip` (SPEC §13). An IP has an entry
/// only while it has connections, so the table is bounded by the open connections.
final class HTTPConnectionCounts: Sendable {
    private let limit: Int
    private let counts = Mutex<[String: Int]>([:])

    init(limit: Int) {
        self.limit = limit
    }

    /// Counts one more connection of `ip`, unless it already has `limit`.
    func acquire(_ ip: String) -> Bool {
        counts.withLock { counts in
            let current = counts[ip, default: 0]
            guard current < limit else { return false }
            counts[ip] = current + 1
            return true
        }
    }

    func release(_ ip: String) {
        counts.withLock { counts in
            guard let current = counts[ip] else { return }
            counts[ip] = current > 1 ? current - 1 : nil
        }
    }

    /// IPs with open HTTP connections.
    var count: Int { counts.withLock { $0.count } }
}
