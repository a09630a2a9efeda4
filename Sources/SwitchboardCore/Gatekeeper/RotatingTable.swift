/// Per-key state (per IP, per IP and event) that is bounded in count and forgets keys left alone, without
/// ever sweeping the table on the path of a new key (SPEC §13).
///
/// Keys live in two generations. Every `lifetime` the older one is dropped whole and the current one becomes
/// the older; a key found in the older generation moves back to the current one. A key untouched for two
/// lifetimes is therefore gone, one touched within the last lifetime is always kept, and nothing is walked.
/// At most `capacity` keys are added per generation: past it ``insert(_:for:now:)`` refuses new keys until
/// the next rotation (the caller decides what an untracked key means).
public struct RotatingTable<Value> {
    private var current: [String: Value] = [:]
    private var previous: [String: Value] = [:]
    private var rotatedAt: ContinuousClock.Instant
    public let lifetime: Duration
    public let capacity: Int

    public init(lifetime: Duration, capacity: Int, now: ContinuousClock.Instant = .now) {
        self.lifetime = lifetime
        self.capacity = capacity
        self.rotatedAt = now
    }

    /// Keys held (both generations).
    public var count: Int { current.count + previous.count }

    /// The value of `key`, if it is still remembered.
    public mutating func value(for key: String, now: ContinuousClock.Instant) -> Value? {
        rotate(now: now)
        if let value = current[key] { return value }
        guard let value = previous.removeValue(forKey: key) else { return nil }
        current[key] = value
        return value
    }

    /// Stores `value` for `key`; false when `key` is new and this generation already took `capacity` keys.
    @discardableResult
    public mutating func insert(_ value: Value, for key: String, now: ContinuousClock.Instant) -> Bool {
        rotate(now: now)
        if current[key] == nil {
            if previous.removeValue(forKey: key) == nil, current.count >= capacity { return false }
        }
        current[key] = value
        return true
    }

    public mutating func remove(_ key: String) {
        current[key] = nil
        previous[key] = nil
    }

    private mutating func rotate(now: ContinuousClock.Instant) {
        let elapsed = now - rotatedAt
        guard elapsed >= lifetime else { return }
        previous = elapsed >= lifetime * 2 ? [:] : current
        current = [:]
        rotatedAt = now
    }
}

extension RotatingTable: Sendable where Value: Sendable {}
