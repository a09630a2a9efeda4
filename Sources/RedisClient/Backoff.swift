/// Reconnect delays: exponential from ``initial`` up to ``maximum``, each with "full jitter" (a random delay
/// between half the step and the step), so nodes that lost Redis together do not all come back at once.
public struct Backoff: Sendable {
    public var initial: Duration
    public var maximum: Duration
    private var step: Duration

    public init(initial: Duration = .milliseconds(100), maximum: Duration = .seconds(5)) {
        self.initial = initial
        self.maximum = maximum
        self.step = initial
    }

    /// The delay before the next attempt; each call doubles the step, up to ``maximum``.
    public mutating func next(using generator: inout some RandomNumberGenerator) -> Duration {
        let current = step
        step = min(step * 2, maximum)
        let nanoseconds = current.components.seconds * 1_000_000_000 + current.components.attoseconds / 1_000_000_000
        return .nanoseconds(Int64.random(in: (nanoseconds / 2)...max(nanoseconds / 2, nanoseconds), using: &generator))
    }

    public mutating func next() -> Duration {
        var generator = SystemRandomNumberGenerator()
        return next(using: &generator)
    }

    /// After a success: the next failure starts from ``initial`` again.
    public mutating func reset() {
        step = initial
    }
}
