import Synchronization

/// One token bucket per key (an IP address): the connection-attempt limit of SPEC §3 step 3.
public final class KeyedRateLimiter: Sendable {
    private let perMinute: Int
    private let buckets = Mutex<[String: TokenBucket]>([:])
    /// Above this many keys, buckets that have refilled are forgotten before a new one is added.
    private let pruneThreshold: Int

    /// - Parameter perMinute: events per key per minute; it is also the burst.
    public init(perMinute: Int, pruneThreshold: Int = 10_000) {
        self.perMinute = perMinute
        self.pruneThreshold = pruneThreshold
    }

    /// Counts one event for `key`; false when its rate is exceeded.
    public func allow(_ key: String, now: ContinuousClock.Instant = .now) -> Bool {
        buckets.withLock { buckets in
            if buckets[key] == nil && buckets.count >= pruneThreshold {
                buckets = buckets.filter { !$0.value.isFull(now: now) }
            }
            var bucket = buckets[key] ?? TokenBucket(
                capacity: Double(perMinute), refillPerSecond: Double(perMinute) / 60, now: now)
            let allowed = bucket.take(now: now)
            buckets[key] = bucket
            return allowed
        }
    }
}
