public import NIOCore
public import RedisClient
public import SwitchboardCore

/// Cluster mode's publish, as one Lua script (one round trip, atomic in Redis's single order): it gives the
/// message the next `seq` of its channel, keeps its ``MessageRecord`` in the channel's history stream (entry
/// id = seq) and publishes `seq`, its tag, its epoch, a newline and the record to every node's feed. The tag
/// (``Tag``) says whom the message is for besides the channel's subscribers.
///
/// Every node, the accepting one included, delivers from the feed, so all of them see one order per channel
/// whichever node accepted each publish (SPEC §8). The record does not hold the `seq`, which only Redis knows,
/// so the accepting node encodes it once for the whole cluster.
///
/// The `seq` stream has an epoch (SPEC §5) kept beside the counter: a publish that finds no counter or no
/// epoch (a new channel, one whose keys expired, a Redis that lost them) starts a new stream with the epoch
/// the node offered (a stream a subscriber's node started, counter 0 and epoch, is kept: ``prepareScript``), and every feed message carries its stream's epoch, so a node never takes a new
/// stream's `seq` for an old one's. Every publish sets the channel's keys to expire `channel-ttl-ms` later
/// (SPEC §4).
public struct PublishScript: Sendable {
    /// The Redis names of one channel, under the cluster's prefix (`redis-prefix`).
    public struct Keys: Sendable {
        /// The channel's `seq` counter.
        public let sequence: String
        /// The epoch of the channel's current `seq` stream.
        public let epoch: String
        /// The channel's history stream.
        public let history: String
        /// The pub/sub channel every node's feed reads.
        public let feed: String

        public init(prefix: String, channel: String) {
            sequence = "\(prefix)seq:\(channel)"
            epoch = "\(prefix)epoch:\(channel)"
            history = "\(prefix)history:\(channel)"
            feed = "\(prefix)feed:\(channel)"
        }
    }

    /// How a channel's stream is kept: `history` records in Redis (0 keeps none), a `freshEpoch` should the
    /// publish start a new stream, and the keys' lifetime after it.
    public struct Stream: Sendable {
        public var history: Int
        public var freshEpoch: String
        public var ttlMilliseconds: Int

        public init(history: Int, freshEpoch: String = StreamEpoch.make(), ttlMilliseconds: Int) {
            self.history = history
            self.freshEpoch = freshEpoch
            self.ttlMilliseconds = ttlMilliseconds
        }
    }

    /// Lua shared by the publish and throttle scripts: one message sequenced, kept and published.
    /// `send(keys, keep, record, feed, tag, fresh, ttl)` with `keys = {seq, history, epoch}`.
    static let sendFunction = """
        local function send(keys, keep, record, feed, tag, fresh, ttl)
          local counted = redis.call('EXISTS', keys[1]) == 1
          local seq = redis.call('INCR', keys[1])
          local epoch = redis.call('GET', keys[3])
          if not counted or not epoch then
            epoch = fresh
            redis.call('SET', keys[3], epoch)
            redis.call('DEL', keys[2])
          end
          if keep > 0 then
            redis.call('XADD', keys[2], 'MAXLEN', keep, seq .. '-0', 'f', record, 't', tag)
            redis.call('PEXPIRE', keys[2], ttl)
          end
          redis.call('PEXPIRE', keys[1], ttl)
          redis.call('PEXPIRE', keys[3], ttl)
          redis.call('PUBLISH', feed, seq .. ' ' .. tag .. ' ' .. epoch .. '\\n' .. record)
          return seq
        end
        """

    /// A node's first look at a retaining channel (before its first subscriber there is answered): the counter,
    /// the epoch (empty: none) and the newest `ARGV[3]` history entries. With an epoch `ARGV[1]` offered (for a
    /// subscriber), a channel with no stream gets one now (counter 0 and that epoch, both expiring `ARGV[2]` ms
    /// later), so that every node's subscribers learn the same epoch before the first publish, which keeps it; a
    /// counter left without its epoch starts a new stream there too.
    /// KEYS: seq, epoch, history.
    public static let prepareScript = RedisScript(
        """
        local epoch = redis.call('GET', KEYS[2])
        if not epoch and ARGV[1] ~= '' then
          epoch = ARGV[1]
          redis.call('SET', KEYS[2], epoch, 'PX', ARGV[2])
          redis.call('SET', KEYS[1], 0, 'NX', 'PX', ARGV[2])
          redis.call('DEL', KEYS[3])
        end
        local top = redis.call('GET', KEYS[1]) or '0'
        return {top, epoch or '', redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', ARGV[3])}
        """)

    /// Whom a message is for, besides its channel's subscribers: a `userId` target's message also reaches
    /// every connection of the user (SPEC §11), and shares the channel `user:<id>`'s one sequence.
    public enum Tag: String, Sendable {
        case channel = "c"
        case user = "u"
    }

    /// KEYS: seq, history, epoch. ARGV: keep, record, feed, tag, fresh epoch, ttl ms.
    static let script = RedisScript(
        sendFunction + """

        return send(KEYS, tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]))
        """)

    /// The call for one publish.
    public static func call(
        _ record: ByteBuffer, keys: Keys, stream: Stream, tag: Tag = .channel
    ) -> (script: RedisScript, keys: [RESPArgument], arguments: [RESPArgument]) {
        (script, [RESPArgument(keys.sequence), RESPArgument(keys.history), RESPArgument(keys.epoch)],
         [RESPArgument(stream.history), RESPArgument(record), RESPArgument(keys.feed),
          RESPArgument(tag.rawValue), RESPArgument(stream.freshEpoch), RESPArgument(stream.ttlMilliseconds)])
    }

    /// Publishes several messages in one pipelined write (one round trip for a whole batch); each result is
    /// the message's `seq` or why Redis refused it.
    public static func publish(
        _ messages: [(record: ByteBuffer, keys: Keys, stream: Stream, tag: Tag)], on connection: RedisConnection
    ) async throws -> [Result<UInt64, RedisClientError>] {
        let results = try await connection.run(messages.map { call($0.record, keys: $0.keys, stream: $0.stream, tag: $0.tag) })
        return results.map { result in
            result.flatMap { reply in
                guard let seq = reply.integer, seq > 0 else { return .failure(.server("publish script answered \(reply)")) }
                return .success(UInt64(seq))
            }
        }
    }

    /// A feed message's parts.
    public struct FeedMessage: Sendable {
        public var seq: UInt64
        public var tag: Tag
        public var epoch: String
        public var record: ByteBuffer
    }

    /// Splits a feed message (`<seq> <tag> <epoch>\n<record>`) into its parts; nil when it is not one of ours.
    public static func parseFeedMessage(_ payload: ByteBuffer) -> FeedMessage? {
        guard let newline = payload.readableBytesView.firstIndex(of: UInt8(ascii: "\n")),
            let header = payload.getString(at: payload.readerIndex, length: newline - payload.readerIndex)
        else { return nil }
        let fields = header.split(separator: " ", omittingEmptySubsequences: false)
        guard fields.count == 3, let seq = UInt64(fields[0]), (1...UInt64(Int64.max)).contains(seq), let tag = Tag(rawValue: String(fields[1])),
            !fields[2].isEmpty, fields[2].utf8.count <= maxEpochBytes,
            let record = payload.getSlice(at: newline + 1, length: payload.writerIndex - newline - 1)
        else { return nil }
        return FeedMessage(seq: seq, tag: tag, epoch: String(fields[2]), record: record)
    }

    /// Longest epoch a feed message may carry (ours are 8 characters).
    static let maxEpochBytes = 32
}
