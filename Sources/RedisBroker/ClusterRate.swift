public import RedisClient
public import SwitchboardCore

/// Per-IP counts shared by the nodes of a cluster (SPEC §14): connect attempts and failed authentications over a
/// sliding minute, counted in Redis by one script call each, so that a client spreading its attempts over the
/// nodes meets the same limit as on one node.
///
/// The minute slides over two fixed one-minute buckets (Redis's clock, so nodes' clocks do not matter): the count
/// is this bucket's plus the previous one's weighted by how much of it still falls in the last 60 s, rounded up: a
/// limit errs toward refusing (rounded down, an attempt just after a minute boundary went uncounted).
public struct ClusterRate: Sendable {
    public let prefix: String

    public init(prefix: String) {
        self.prefix = prefix
    }

    /// The key of `key`'s count of `event`; the buckets are this key, `:` and the minute.
    func key(of event: ClusterRateEvent, _ key: String) -> String { "\(prefix)rate:\(event.rawValue):\(key)" }

    /// Adds one to the current minute's bucket of `KEYS[1]` and answers the sliding count.
    static let countScript = RedisScript(
        """
        local now = redis.call('TIME')
        local ms = now[1] * 1000 + math.floor(now[2] / 1000)
        local minute = math.floor(ms / 60000)
        local current = KEYS[1] .. ':' .. minute
        local count = redis.call('INCR', current)
        redis.call('PEXPIRE', current, 120000)
        local previous = tonumber(redis.call('GET', KEYS[1] .. ':' .. (minute - 1)) or '0')
        return count + math.ceil(previous * (60000 - ms % 60000) / 60000)
        """)

    /// Counts one `event` from `key` and answers the cluster's count over the last minute.
    public func count(_ event: ClusterRateEvent, key: String, on connection: RedisConnection) async throws -> Int {
        let reply = try await connection.run(Self.countScript, keys: [RESPArgument(self.key(of: event, key))], arguments: [])
        guard let count = reply.integer else { throw RedisClientError.server("rate script answered \(reply)") }
        return Int(count)
    }
}
