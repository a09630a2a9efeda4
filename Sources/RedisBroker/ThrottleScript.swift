import RedisClient

/// SPEC §5's throttle and conflation across a cluster (SPEC §8: for a `(channel, key)` the latest value wins
/// across nodes, and a window opened on a node that dies still ends), kept in Redis so every node sees the
/// same windows:
///
/// - one sorted set of open windows scored by their deadline (Redis's clock), member `<channel>\n<window>`,
///   where the window is `k<key>` for a conflated key and empty for the channel's keyless messages;
/// - per channel, a hash of the latest held message of each keyed window, and a list of the keyless messages
///   waiting for their window's end.
///
/// A publish into an idle window goes out at once (the same steps as ``PublishScript``) and opens the window;
/// into an open one it is held. At the deadline a release script sends what is held, in order, and keeps the
/// window open for another interval, or closes it when nothing was held. The node that opened a window
/// releases it on time; every node also sweeps for overdue windows, so the window of a node that died ends
/// too. The release checks the deadline itself, so a window is released once however many nodes try.
public enum ThrottleScript {
    /// The Redis names of one throttled channel, beside its ``PublishScript/Keys``.
    public struct Keys: Sendable {
        /// Open windows of the whole cluster, by deadline.
        public let windows: String
        /// The latest held message of each keyed window of the channel.
        public let held: String
        /// The channel's keyless messages waiting for their window's end.
        public let queue: String

        public init(prefix: String, channel: String) {
            windows = "\(prefix)throttle:windows"
            held = "\(prefix)throttle:held:\(channel)"
            queue = "\(prefix)throttle:queue:\(channel)"
        }
    }

    /// The window a message belongs to: `k<key>` for a conflated key, empty for keyless messages.
    public static func window(key: String?, conflate: Bool) -> String {
        guard conflate, let key else { return "" }
        return "k" + key
    }

    /// A window's member in the sorted set, and back.
    public static func member(channel: String, window: String) -> String { "\(channel)\n\(window)" }

    public static func parse(member: String) -> (channel: String, window: String)? {
        guard let newline = member.firstIndex(of: "\n") else { return nil }
        return (String(member[..<newline]), String(member[member.index(after: newline)...]))
    }

    /// Lua shared by both scripts: Redis's clock in ms, and ``PublishScript``'s `send`. A held message is
    /// stored as its ``MessageRecord``.
    private static let prelude = """
        local t = redis.call('TIME')
        local now = t[1] * 1000 + math.floor(t[2] / 1000)

        """ + PublishScript.sendFunction

    /// KEYS: seq, history, windows, held, queue, epoch. ARGV: keep, record, feed, tag, member, interval ms, window,
    /// fresh epoch, ttl ms.
    /// Returns the seq when sent now, -1 when held, -2 when held in place of an older held message.
    static let publish = RedisScript(
        prelude + """

        if redis.call('ZSCORE', KEYS[3], ARGV[5]) then
          local message = ARGV[2]
          if ARGV[7] == '' then
            redis.call('RPUSH', KEYS[5], message)
            return -1
          end
          local replaced = redis.call('HEXISTS', KEYS[4], ARGV[7])
          redis.call('HSET', KEYS[4], ARGV[7], message)
          if replaced == 1 then return -2 end
          return -1
        end
        redis.call('ZADD', KEYS[3], now + tonumber(ARGV[6]), ARGV[5])
        return send({KEYS[1], KEYS[2], KEYS[6]}, tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], ARGV[8], tonumber(ARGV[9]))
        """)

    /// KEYS: windows, seq, history, held, queue, epoch. ARGV: member, window, keep, feed, tag, interval ms, fresh
    /// epoch, ttl ms.
    /// Returns -1 when the window is not due (not yet, or another node released it), else how many messages
    /// it sent (0: the window closed).
    static let release = RedisScript(
        prelude + """

        local deadline = redis.call('ZSCORE', KEYS[1], ARGV[1])
        if not deadline or tonumber(deadline) > now then return -1 end
        local messages = {}
        if ARGV[2] == '' then
          messages = redis.call('LRANGE', KEYS[5], 0, -1)
          redis.call('DEL', KEYS[5])
        else
          local held = redis.call('HGET', KEYS[4], ARGV[2])
          if held then
            messages = { held }
            redis.call('HDEL', KEYS[4], ARGV[2])
          end
        end
        if #messages == 0 then
          redis.call('ZREM', KEYS[1], ARGV[1])
          return 0
        end
        for _, message in ipairs(messages) do
          send({KEYS[2], KEYS[3], KEYS[6]}, tonumber(ARGV[3]), message, ARGV[4], ARGV[5], ARGV[7], tonumber(ARGV[8]))
        end
        redis.call('ZADD', KEYS[1], now + tonumber(ARGV[6]), ARGV[1])
        return #messages
        """)

    /// KEYS: windows. Returns the members of windows past their deadline (at most 200).
    static let overdue = RedisScript(
        prelude + """

        return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 200)
        """)
}
