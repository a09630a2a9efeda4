import Synchronization

/// IP addresses refused at upgrade (SPEC §3 step 1) until their block expires.
public final class BlockList: Sendable {
    private let blocked = Mutex<[String: ContinuousClock.Instant]>([:])

    public init() {}

    /// Blocks `ip` for `duration` from now (extending any shorter block).
    public func block(_ ip: String, for duration: Duration, now: ContinuousClock.Instant = .now) {
        blocked.withLock { blocked in
            let until = now + duration
            if let current = blocked[ip], current > until { return }
            blocked[ip] = until
        }
    }

    /// Whether `ip` is blocked now. Expired blocks are forgotten by ``expire(now:)``.
    public func isBlocked(_ ip: String, now: ContinuousClock.Instant = .now) -> Bool {
        blocked.withLock { blocked in blocked[ip].map { $0 > now } ?? false }
    }

    /// Forgets blocks that have run out and returns their IPs (for the `ip_unblocked` security event).
    public func expire(now: ContinuousClock.Instant = .now) -> [String] {
        blocked.withLock { blocked in
            let expired = blocked.filter { $0.value <= now }.map(\.key)
            for ip in expired { blocked[ip] = nil }
            return expired
        }
    }

    /// Number of IPs blocked now.
    public func count(now: ContinuousClock.Instant = .now) -> Int {
        blocked.withLock { blocked in blocked.values.filter { $0 > now }.count }
    }
}
