import Synchronization

/// IP addresses refused at upgrade (SPEC §3 step 1) until their block expires.
///
/// Bounded (SPEC §13): at most `capacity` IPs are blocked at once; past it a new block is refused (and the
/// caller says so), so a flood of addresses that each earn a block cannot grow the table without limit.
public final class BlockList: Sendable {
    private let blocked = Mutex<[String: ContinuousClock.Instant]>([:])
    public let capacity: Int

    public init(capacity: Int = 100_000) {
        self.capacity = capacity
    }

    /// Blocks `ip` for `duration` from now (extending any shorter block); false when the list is full.
    @discardableResult
    public func block(_ ip: String, for duration: Duration, now: ContinuousClock.Instant = .now) -> Bool {
        blocked.withLock { blocked in
            let until = now + duration
            if let current = blocked[ip] {
                if current < until { blocked[ip] = until }
                return true
            }
            guard blocked.count < capacity else { return false }
            blocked[ip] = until
            return true
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
