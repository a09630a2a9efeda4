import NIOConcurrencyHelpers
public import NIOCore
public import RedisClient
public import SwitchboardCore

/// The cluster broker (SPEC §8), first part: publishes are sequenced in Redis by ``PublishScript`` and every
/// node, the accepting one included, delivers them from the feed in one `seq` order per channel, each once,
/// repairing gaps from the history stream (``FeedSequencer``). `userId` and `all: true` targets are resolved
/// by each node for its own connections.
///
/// Not yet here (so `serve` does not offer it): cluster-wide throttle windows, recovery from Redis on a node
/// that never saw a channel, the node registry and cluster stats, distributed per-user limits, disconnects and
/// blocks on every node, and outage handling (reconnect, local fallback, resync).
public final class RedisBroker: Broker, Sendable {
    /// Where Redis is and how this cluster's names start.
    public struct Configuration: Sendable {
        public var url: RedisURL
        /// Prefix of every key and channel (`redis-prefix`).
        public var prefix: String
        public var connection: RedisConnection.Configuration

        public init(url: RedisURL, prefix: String = "switchboard:", connection: RedisConnection.Configuration = .init()) {
            self.url = url
            self.prefix = prefix
            self.connection = connection
        }
    }

    /// A message of the feed as the node delivers it.
    struct FeedMessage: Sendable {
        let payload: ByteBuffer
        let tag: PublishScript.Tag
    }

    /// What a feed channel carries: one Switchboard channel's messages (a `userId` target's go to the channel
    /// `user:<id>`, tagged), or the global ones.
    enum FeedTarget: Hashable, Sendable {
        case channel(String)
        case all
    }

    public let configuration: Configuration
    private let hub: Hub
    private let recipients: any LocalRecipients
    private let loop: any EventLoop
    private let links = NIOLockedValueBox<(commands: RedisConnection?, feed: RedisSubscription?)>((nil, nil))
    private let sequencers = NIOLockedValueBox<[FeedTarget: FeedSequencer<FeedMessage>]>([:])
    /// Messages the feed lost and the history no longer held, summed over channels (for stats and metrics).
    public var lostMessages: UInt64 { sequencers.withLockedValue { $0.values.reduce(0) { $0 + $1.lost } } }

    public init(hub: Hub, recipients: any LocalRecipients, configuration: Configuration, loop: any EventLoop) {
        self.hub = hub
        self.recipients = recipients
        self.configuration = configuration
        self.loop = loop
    }

    /// Connects the command connection and the feed (one pattern subscription for every feed channel).
    public func start() async throws {
        let commands = try await RedisConnection.connect(to: configuration.url, configuration: configuration.connection, on: loop)
        let feed = try await RedisSubscription.connect(to: configuration.url, configuration: configuration.connection, on: loop) {
            [weak self] message in self?.received(message)
        }
        try await feed.psubscribe(["\(configuration.prefix)feed:*"])
        links.withLockedValue { $0 = (commands, feed) }
    }

    /// Closes both connections.
    public func stop() async {
        let (commands, feed) = links.withLockedValue { links in
            defer { links = (nil, nil) }
            return links
        }
        await commands?.close()
        await feed?.close()
    }

    // MARK: Publishing

    public func publish(_ publication: Publication, to target: BrokerTarget) async throws(BrokerError) -> Hub.PublishResult {
        guard let commands = links.withLockedValue({ $0.commands }) else { throw BrokerError("not connected to Redis") }
        let feedTarget: FeedTarget
        let history: Int
        var tag = PublishScript.Tag.channel
        switch target {
        case .channel(let namespace):
            feedTarget = .channel(publication.channel)
            history = namespace.history
        case .user(_, let namespace):
            feedTarget = .channel(publication.channel)  // `user:<id>`: one sequence with that channel's publishes
            history = namespace.history
            tag = .user
        case .all:
            feedTarget = .all
            history = 0
        }
        let parts = publication.encodedAroundSeq(timestampMs: Hub.wallClockMilliseconds(), global: feedTarget == .all)
        let keys = keys(of: feedTarget)
        let seq: UInt64
        do {
            seq = try await PublishScript.publish(
                [(PublishScript.Frame(head: parts.head, tail: parts.tail), keys, history, tag)], on: commands)[0].get()
        } catch {
            throw BrokerError("Redis: \(error)")
        }
        // Counted as published by the accepting node only (each node counts its own deliveries); delivered from
        // the feed on every node, so no recipients are known here.
        switch target {
        case .channel(let namespace), .user(_, let namespace): hub.statistics.recordPublished(namespace: namespace.name)
        case .all: hub.statistics.recordPublished(namespace: "")
        }
        return Hub.PublishResult(seq: seq, recipients: 0)
    }

    /// Redis names of a feed target: `c:<channel>`, or `all` (which no channel name can be).
    func keys(of target: FeedTarget) -> PublishScript.Keys {
        switch target {
        case .channel(let channel): PublishScript.Keys(prefix: configuration.prefix, channel: "c:\(channel)")
        case .all: PublishScript.Keys(prefix: configuration.prefix, channel: "all")
        }
    }

    // MARK: The feed

    /// The feed target of a Redis channel name, the reverse of ``keys(of:)``.
    func target(ofFeed name: String) -> FeedTarget? {
        let feed = "\(configuration.prefix)feed:"
        guard name.hasPrefix(feed) else { return nil }
        let rest = name.dropFirst(feed.count)
        if rest == "all" { return .all }
        if rest.hasPrefix("c:") { return .channel(String(rest.dropFirst(2))) }
        return nil
    }

    /// A feed message, on the feed connection's loop, in the order Redis sent them.
    private func received(_ message: RedisMessage) {
        guard let target = target(ofFeed: message.channel), let (seq, tag, frame) = PublishScript.parseFeedMessage(message.payload)
        else { return }
        let action = sequencers.withLockedValue { sequencers in
            sequencers[target, default: FeedSequencer()].received(seq, FeedMessage(payload: frame, tag: tag))
        }
        perform(action, for: target)
    }

    private func perform(_ action: FeedSequencer<FeedMessage>.Action, for target: FeedTarget) {
        for (seq, message) in action.deliver { deliver(seq: seq, message, to: target) }
        if let range = action.repair { repair(range, of: target) }
    }

    /// Reads a gap from the history stream and hands what it held to the sequencer.
    private func repair(_ range: ClosedRange<UInt64>, of target: FeedTarget) {
        guard let commands = links.withLockedValue({ $0.commands }) else { return }
        let history = keys(of: target).history
        loop.makeFutureWithTask { [self] in
            let found: [(seq: UInt64, message: FeedMessage)]
            do {
                let entries = try await commands.send([
                    "XRANGE", RESPArgument(history), RESPArgument("\(range.lowerBound)-0"), RESPArgument("\(range.upperBound)-0"),
                ])
                found = (entries.array ?? []).compactMap(Self.historyEntry)
            } catch {
                found = []
            }
            let action = sequencers.withLockedValue { $0[target]?.repaired(found) } ?? .init()
            perform(action, for: target)
        }.whenFailure { _ in }
    }

    /// `[id, ["f", frame, "t", tag]]` of the history stream as a seq and its message.
    static func historyEntry(_ entry: RESPValue) -> (seq: UInt64, message: FeedMessage)? {
        guard let parts = entry.array, parts.count == 2, let id = parts[0].string,
            let seq = id.split(separator: "-").first.flatMap({ UInt64($0) }),
            let fields = parts[1].array, fields.count == 4, case .bulkString(let frame?) = fields[1],
            let tag = fields[3].string.flatMap(PublishScript.Tag.init(rawValue:))
        else { return nil }
        return (seq, FeedMessage(payload: frame, tag: tag))
    }

    /// Hands one sequenced message to this node's connections.
    private func deliver(seq: UInt64, _ message: FeedMessage, to target: FeedTarget) {
        switch target {
        case .channel(let channel):
            guard let (name, namespace) = try? hub.directory.resolve(channel) else { return }
            // A `userId` target's message: `user:<id>`'s subscribers and every connection of the user.
            let extra = message.tag == .user ? recipients.subscribers(ofUser: String(name.topic ?? "")) : []
            hub.deliverSequenced(channel: channel, namespace: namespace, seq: seq, payload: message.payload, key: nil, extraRecipients: extra)
        case .all:
            hub.deliverGlobalSequenced(seq: seq, payload: message.payload, to: recipients.allSubscribers)
        }
    }
}
