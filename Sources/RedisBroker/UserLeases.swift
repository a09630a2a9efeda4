public import RedisClient

/// Per-user connection limits across nodes (SPEC §8): one sorted set per user of `node|connection` leases
/// scored by their expiry, checked and taken by one script, so two nodes can never both admit the last slot.
/// A node refreshes its leases while the connections live; a dead node's leases expire by themselves.
public struct UserLeases: Sendable {
    public let prefix: String
    /// How long a lease lives without a refresh.
    public let leaseMilliseconds: Int

    public init(prefix: String, leaseMilliseconds: Int = 15_000) {
        self.prefix = prefix
        self.leaseMilliseconds = leaseMilliseconds
    }

    func key(of userId: String) -> String { "\(prefix)user-leases:\(userId)" }

    /// Drops expired leases, then adds `member` if fewer than `limit` remain (Redis's clock, so nodes' clocks
    /// do not matter); 1 if taken, 0 if the pool is full. Taking a lease the member already holds renews it.
    static let acquireScript = RedisScript(
        """
        local now = redis.call('TIME')
        local ms = now[1] * 1000 + math.floor(now[2] / 1000)
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
        if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
          return 0
        end
        redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[3]), ARGV[1])
        redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
        return 1
        """)

    /// Renews this node's leases of a user (`ARGV[3...]`, with the pool's limit `ARGV[2]`). A lease that expired
    /// meanwhile (the node was paused or cut off longer than a lease lives) is taken again if the pool has room,
    /// as at admission; the members it could not take back are returned: their connections are over the limit
    /// now that other nodes admitted others in their place, and must close.
    static let refreshScript = RedisScript(
        """
        local now = redis.call('TIME')
        local ms = now[1] * 1000 + math.floor(now[2] / 1000)
        local expiry = ms + tonumber(ARGV[1])
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
        local lost = {}
        for i = 3, #ARGV do
          if redis.call('ZSCORE', KEYS[1], ARGV[i]) ~= false or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
            redis.call('ZADD', KEYS[1], expiry, ARGV[i])
          else
            table.insert(lost, ARGV[i])
          end
        end
        redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2)
        return lost
        """)

    /// Takes a slot of `userId`'s pool of `limit` for `member` (`node|connection`); false when it is full.
    public func acquire(_ member: String, of userId: String, limit: Int, on connection: RedisConnection) async throws -> Bool {
        let reply = try await connection.run(
            Self.acquireScript, keys: [RESPArgument(key(of: userId))],
            arguments: [RESPArgument(member), RESPArgument(limit), RESPArgument(leaseMilliseconds)])
        return reply.integer == 1
    }

    /// Gives the slot back.
    public func release(_ member: String, of userId: String, on connection: RedisConnection) async throws {
        _ = try await connection.send(["ZREM", RESPArgument(key(of: userId)), RESPArgument(member)])
    }

    /// Renews this node's leases of `userId` in a pool of `limit`, taking back expired ones where there is room;
    /// returns the members that could not be kept (see ``refreshScript``).
    public func refresh(_ members: [String], of userId: String, limit: Int, on connection: RedisConnection) async throws -> [String] {
        guard !members.isEmpty else { return [] }
        let reply = try await connection.run(
            Self.refreshScript, keys: [RESPArgument(key(of: userId))],
            arguments: [RESPArgument(leaseMilliseconds), RESPArgument(limit)] + members.map { RESPArgument($0) })
        return (reply.array ?? []).compactMap(\.string)
    }
}
