import DequeModule
import Synchronization

/// Failed authentications per IP in a sliding window (SPEC §7): the failure that reaches the threshold
/// asks for a block.
///
/// Per-IP failures live in a ``RotatingTable`` whose lifetime is the window: an IP whose failures all left
/// the window is forgotten without a sweep. Each IP keeps at most `threshold` instants. Past the table's
/// capacity of new IPs per window, a failure from a new IP blocks it at once (fail closed: a flood of
/// addresses cannot buy unlimited guesses).
public final class AuthFailureTracker: Sendable {
    private let threshold: Int
    private let window: Duration
    private let failures: Mutex<RotatingTable<Deque<ContinuousClock.Instant>>>

    /// - Parameters:
    ///   - threshold: failures within `window` that block an IP (`block-after-failures`).
    ///   - window: the sliding window (SPEC: 60 s).
    ///   - capacity: most new IPs tracked per window.
    public init(threshold: Int, window: Duration = .seconds(60), capacity: Int = 100_000) {
        self.threshold = threshold
        self.window = window
        self.failures = Mutex(RotatingTable(lifetime: window, capacity: capacity))
    }

    /// Counts one failure from `ip`; true when it reaches the threshold (the IP's count then starts over).
    public func recordFailure(from ip: String, now: ContinuousClock.Instant = .now) -> Bool {
        failures.withLock { failures in
            var recent = failures.value(for: ip, now: now) ?? []
            while let first = recent.first, now - first >= window { recent.removeFirst() }
            recent.append(now)
            if recent.count >= threshold {
                failures.remove(ip)
                return true
            }
            return !failures.insert(recent, for: ip, now: now)
        }
    }

    /// IPs tracked now.
    public var count: Int { failures.withLock { $0.count } }
}
