import DequeModule
import Synchronization

/// Failed authentications per IP in a sliding window (SPEC §7): the failure that reaches the threshold
/// asks for a block.
public final class AuthFailureTracker: Sendable {
    private let threshold: Int
    private let window: Duration
    private let failures = Mutex<[String: Deque<ContinuousClock.Instant>]>([:])

    /// - Parameters:
    ///   - threshold: failures within `window` that block an IP (`block-after-failures`).
    ///   - window: the sliding window (SPEC: 60 s).
    public init(threshold: Int, window: Duration = .seconds(60)) {
        self.threshold = threshold
        self.window = window
    }

    /// Counts one failure from `ip`; true when it reaches the threshold (the IP's count then starts over).
    public func recordFailure(from ip: String, now: ContinuousClock.Instant = .now) -> Bool {
        failures.withLock { failures in
            var recent = failures[ip] ?? []
            while let first = recent.first, now - first >= window { recent.removeFirst() }
            recent.append(now)
            if recent.count >= threshold {
                failures[ip] = nil
                return true
            }
            failures[ip] = recent
            return false
        }
    }

    /// Forgets IPs whose failures have all left the window (call now and then to bound memory).
    public func prune(now: ContinuousClock.Instant = .now) {
        failures.withLock { failures in
            failures = failures.filter { _, recent in recent.last.map { now - $0 < window } ?? false }
        }
    }
}
