public import NIOCore
public import RedisClient

/// Cluster mode's publish, as one Lua script (one round trip, atomic in Redis's single order): it gives the
/// message the next `seq` of its channel, completes the frame with it, keeps the frame in the channel's
/// history stream (entry id = seq) and publishes `seq`, its tag, a newline and the frame to every node's
/// feed. The tag (``Tag``) says whom the message is for besides the channel's subscribers.
///
/// Every node, the accepting one included, delivers from the feed, so all of them see one order per channel
/// whichever node accepted each publish (SPEC §8). The frame is completed in Redis because only Redis knows
/// the `seq`: the node sends the encoded message cut around it (``Frame``), so it is still encoded once for
/// the whole cluster.
public struct PublishScript: Sendable {
    /// The Redis names of one channel, under the cluster's prefix (`redis-prefix`).
    public struct Keys: Sendable {
        /// The channel's `seq` counter.
        public let sequence: String
        /// The channel's history stream.
        public let history: String
        /// The pub/sub channel every node's feed reads.
        public let feed: String

        public init(prefix: String, channel: String) {
            sequence = "\(prefix)seq:\(channel)"
            history = "\(prefix)history:\(channel)"
            feed = "\(prefix)feed:\(channel)"
        }
    }

    /// Whom a message is for, besides its channel's subscribers: a `userId` target's message also reaches
    /// every connection of the user (SPEC §11), and shares the channel `user:<id>`'s one sequence.
    public enum Tag: String, Sendable {
        case channel = "c"
        case user = "u"
    }

    /// A message encoded up to its `seq`: `head` + seq + `tail` is the whole frame text.
    public struct Frame: Sendable {
        public var head: ByteBuffer
        public var tail: ByteBuffer

        public init(head: ByteBuffer, tail: ByteBuffer) {
            self.head = head
            self.tail = tail
        }
    }

    static let script = RedisScript(
        """
        local seq = redis.call('INCR', KEYS[1])
        local frame = ARGV[2] .. seq .. ARGV[3]
        local keep = tonumber(ARGV[1])
        if keep > 0 then
          redis.call('XADD', KEYS[2], 'MAXLEN', keep, seq .. '-0', 'f', frame, 't', ARGV[5])
        end
        redis.call('PUBLISH', ARGV[4], seq .. ' ' .. ARGV[5] .. '\\n' .. frame)
        return seq
        """)

    /// The call for one publish: `history` frames are kept on the channel (0 keeps none).
    public static func call(
        _ frame: Frame, keys: Keys, history: Int, tag: Tag = .channel
    ) -> (script: RedisScript, keys: [RESPArgument], arguments: [RESPArgument]) {
        (script, [RESPArgument(keys.sequence), RESPArgument(keys.history)],
         [RESPArgument(history), RESPArgument(frame.head), RESPArgument(frame.tail), RESPArgument(keys.feed), RESPArgument(tag.rawValue)])
    }

    /// Publishes several messages in one pipelined write (one round trip for a whole batch); each result is
    /// the message's `seq` or why Redis refused it.
    public static func publish(
        _ messages: [(frame: Frame, keys: Keys, history: Int, tag: Tag)], on connection: RedisConnection
    ) async throws -> [Result<UInt64, RedisClientError>] {
        let results = try await connection.run(messages.map { call($0.frame, keys: $0.keys, history: $0.history, tag: $0.tag) })
        return results.map { result in
            result.flatMap { reply in
                guard let seq = reply.integer, seq > 0 else { return .failure(.server("publish script answered \(reply)")) }
                return .success(UInt64(seq))
            }
        }
    }

    /// Splits a feed message (`<seq> <tag>\n<frame>`) into its parts; nil when it is not one of ours.
    public static func parseFeedMessage(_ payload: ByteBuffer) -> (seq: UInt64, tag: Tag, frame: ByteBuffer)? {
        guard let newline = payload.readableBytesView.firstIndex(of: UInt8(ascii: "\n")),
            let header = payload.getString(at: payload.readerIndex, length: newline - payload.readerIndex)
        else { return nil }
        let fields = header.split(separator: " ")
        guard fields.count == 2, let seq = UInt64(fields[0]), let tag = Tag(rawValue: String(fields[1])),
            let frame = payload.getSlice(at: newline + 1, length: payload.writerIndex - newline - 1)
        else { return nil }
        return (seq, tag, frame)
    }
}
