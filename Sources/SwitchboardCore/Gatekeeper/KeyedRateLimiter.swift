import Synchronization

/// One token bucket per key (an IP address): the connection-attempt limit of SPEC §3 step 3.
///
/// Buckets live in a ``RotatingTable`` with a minute's lifetime, the time a bucket takes to refill: one left
/// alone that long is full again, so forgetting it changes nothing. A burst of new keys past the table's
/// capacity is refused (fail closed: an attacker with more addresses than that cannot get past the limit by
/// flooding the table).
public final class KeyedRateLimiter: Sendable {
    private let perMinute: Int
    private let buckets: Mutex<RotatingTable<TokenBucket>>

    /// - Parameters:
    ///   - perMinute: events per key per minute; it is also the burst.
    ///   - capacity: most new keys tracked per minute.
    public init(perMinute: Int, capacity: Int = 100_000) {
        self.perMinute = perMinute
        self.buckets = Mutex(RotatingTable(lifetime: .seconds(60), capacity: capacity))
    }

    /// Counts one event for `key`; false when its rate is exceeded (or a flood of new keys filled the table).
    public func allow(_ key: String, now: ContinuousClock.Instant = .now) -> Bool {
        buckets.withLock { buckets in
            var bucket = buckets.value(for: key, now: now) ?? TokenBucket(
                capacity: Double(perMinute), refillPerSecond: Double(perMinute) / 60, now: now)
            let allowed = bucket.take(now: now)
            guard buckets.insert(bucket, for: key, now: now) else { return false }
            return allowed
        }
    }

    /// Keys tracked now.
    public var count: Int { buckets.withLock { $0.count } }
}
