/// Inbound message limit of one connection (SPEC §7): a token bucket of `rate` per minute with `burst`,
/// and behind it a second bucket twice as large: a client that empties both has sent over three times the
/// limit and is closed with 4008.
public struct MessageRateLimiter: Sendable {
    /// What to do with one inbound message.
    public enum Verdict: Sendable, Equatable {
        case allow
        /// Answer `RATE_LIMITED`, keep the connection.
        case limit
        /// Over three times the limit: close with 4008.
        case abuse
    }

    private var allowed: TokenBucket
    private var tolerated: TokenBucket

    public init(perMinute rate: Int, burst: Int, now: ContinuousClock.Instant = .now) {
        let refill = Double(rate) / 60
        allowed = TokenBucket(capacity: Double(burst), refillPerSecond: refill, now: now)
        tolerated = TokenBucket(capacity: Double(burst) * 2, refillPerSecond: refill * 2, now: now)
    }

    /// Counts one inbound message.
    public mutating func check(now: ContinuousClock.Instant = .now) -> Verdict {
        if allowed.take(now: now) { return .allow }
        return tolerated.take(now: now) ? .limit : .abuse
    }
}
