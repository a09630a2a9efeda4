public import Logging
import NIOConcurrencyHelpers
public import NIOCore
public import RedisClient
public import SwitchboardCore

/// Publishing through Redis (one script call per message), throttled channels' windows, and the local publish
/// while Redis is out of reach (SPEC §8).
extension RedisBroker {
    public func publish(_ publication: Publication, to target: BrokerTarget) async throws(BrokerError) -> Hub.PublishResult {
        try await publishBatch([(publication, target)])[0].get()
    }

    /// One publish as a script call: ``PublishScript``, or ``ThrottleScript`` on a throttled namespace.
    struct ScriptedPublish {
        let call: (script: RedisScript, keys: [RESPArgument], arguments: [RESPArgument])
        /// The window, when throttled: a message sent now opens it, and this node releases it at its end.
        let window: (channel: String, window: String, namespace: Namespace)?
        let namespaceName: String
    }

    /// What a publication is on the feed: its feed target, history kept in Redis and tag.
    func feedTarget(of publication: Publication, _ target: BrokerTarget) -> (FeedTarget, history: Int, PublishScript.Tag) {
        switch target {
        case .channel(let namespace): (.channel(publication.channel), namespace.history, .channel)
        // `user:<id>`: one sequence with that channel's publishes.
        case .user(_, let namespace): (.channel(publication.channel), namespace.history, .user)
        case .all: (.all, 0, .channel)
        }
    }

    func scripted(_ publication: Publication, to target: BrokerTarget) -> ScriptedPublish {
        let (feedTarget, history, tag) = feedTarget(of: publication, target)
        let keep = max(history, configuration.repairWindow)
        let record = MessageRecord.encode(publication, timestampMs: Hub.wallClockMilliseconds(), global: feedTarget == .all)
        let keys = keys(of: feedTarget)
        let namespaceName: String = switch target {
        case .channel(let namespace), .user(_, let namespace): namespace.name
        case .all: ""
        }
        if case .channel(let namespace) = target, namespace.throttleMs > 0 {
            let channel = publication.channel
            let window = ThrottleScript.window(key: publication.key, conflate: namespace.conflate)
            let throttle = ThrottleScript.Keys(prefix: configuration.prefix, channel: channel)
            let call = (
                ThrottleScript.publish,
                [keys.sequence, keys.history, throttle.windows, throttle.held, throttle.queue, keys.epoch].map { RESPArgument($0) },
                [
                    RESPArgument(keep), RESPArgument(record), RESPArgument(keys.feed),
                    RESPArgument(tag.rawValue), RESPArgument(ThrottleScript.member(channel: channel, window: window)),
                    RESPArgument(namespace.throttleMs), RESPArgument(window), RESPArgument(StreamEpoch.make()),
                    RESPArgument(retentionMilliseconds),
                ])
            return ScriptedPublish(call: call, window: (channel, window, namespace), namespaceName: namespaceName)
        }
        let call = PublishScript.call(
            record, keys: keys,
            stream: PublishScript.Stream(history: keep, ttlMilliseconds: retentionMilliseconds), tag: tag)
        return ScriptedPublish(call: call, window: nil, namespaceName: namespaceName)
    }

    /// Publishes a batch as one pipelined write of one script call per message (one round trip for the whole
    /// batch, in order). Each message is counted as published by this node (the accepting one); every node
    /// counts its own deliveries from the feed. The recipients a reply states are ``clusterRecipients(of:_:)``.
    public func publishBatch(_ items: [(publication: Publication, target: BrokerTarget)]) async -> [Result<Hub.PublishResult, BrokerError>] {
        guard let commands = state.withLockedValue({ $0.commands }), commands.channel.isActive else {
            return items.map { .success(publishLocally($0.publication, to: $0.target)) }
        }
        let publishes = items.map { scripted($0.publication, to: $0.target) }
        let replies: [Result<RESPValue, RedisClientError>]
        do {
            replies = try await commands.run(publishes.map(\.call))
            statistics.recordRedisCommands(publishes.count)
        } catch {
            // The link broke during the call: Redis may or may not have run the scripts, so the messages are not
            // also delivered locally (they could then arrive twice); the publisher is told and may retry.
            return items.map { _ in .failure(BrokerError("Redis: \(error)")) }
        }
        let peers = state.withLockedValue { $0.peers }
        return zip(zip(items, publishes), replies).map { item, reply in
            let publish = item.1
            guard case .success(let value) = reply, let answer = value.integer else {
                return .failure(BrokerError("Redis: \(reply)"))
            }
            statistics.recordPublished(namespace: publish.namespaceName)
            switch answer {
            case 1...:
                if let (channel, window, namespace) = publish.window { scheduleRelease(channel: channel, window: window, namespace: namespace) }
                let recipients = clusterRecipients(of: item.0.publication, item.0.target, peers: peers)
                return .success(Hub.PublishResult(seq: UInt64(answer), recipients: recipients))
            case -2:
                statistics.recordDropped(namespace: publish.namespaceName, reason: .conflated)
                return .success(Hub.PublishResult(seq: nil, recipients: 0, held: true))
            case -1:
                return .success(Hub.PublishResult(seq: nil, recipients: 0, held: true))
            default:
                return .failure(BrokerError("Redis: the publish script answered \(answer)"))
            }
        }
    }

    /// The connections of the cluster a message for `target` reaches: this node's now, plus the other nodes' as
    /// they last announced them (at most a heartbeat old; each announces its busiest channels and its
    /// connection count). A `userId` target counts this node's connections of the user and the other nodes'
    /// subscribers of `user:<id>` (nodes do not announce their users).
    func clusterRecipients(of publication: Publication, _ target: BrokerTarget, peers: [String: JSONValue]) -> Int {
        func announced(_ field: (JSONValue) -> Int64?) -> Int {
            peers.values.reduce(0) { sum, figures in
                let (total, overflow) = sum.addingReportingOverflow(Int(clamping: max(field(figures) ?? 0, 0)))
                return overflow ? Int.max : total
            }
        }
        func channelCount(_ figures: JSONValue) -> Int64? {
            if case .int(let count)? = figures["channels"]?[publication.channel] { return count }
            return nil
        }
        switch target {
        case .channel:
            return hub.subscriberCount(of: publication.channel) + announced(channelCount)
        case .user(let userId, _):
            return recipients.subscribers(ofUser: userId).count + announced(channelCount)
        case .all:
            return recipients.allSubscribers.count + announced { figures in
                if case .int(let count)? = figures["connections"] { return count }
                return nil
            }
        }
    }

    // MARK: Throttled channels

    /// Releases a window this node opened (or released last) at its end.
    func scheduleRelease(channel: String, window: String, namespace: Namespace) {
        loop.scheduleTask(in: .milliseconds(Int64(namespace.throttleMs))) { [weak self] in
            self?.release(channel: channel, window: window, namespace: namespace)
        }
    }

    /// Sends what a due window holds; when it sent something the window runs another interval, which this node
    /// then releases too.
    func release(channel: String, window: String, namespace: Namespace) {
        guard let commands = state.withLockedValue({ $0.commands }), commands.channel.isActive else { return }
        let keys = keys(of: .channel(channel))
        let throttle = ThrottleScript.Keys(prefix: configuration.prefix, channel: channel)
        let arguments: [RESPArgument] = [
            RESPArgument(ThrottleScript.member(channel: channel, window: window)), RESPArgument(window),
            RESPArgument(max(namespace.history, configuration.repairWindow)), RESPArgument(keys.feed),
            RESPArgument(PublishScript.Tag.channel.rawValue), RESPArgument(namespace.throttleMs), RESPArgument(StreamEpoch.make()),
            RESPArgument(retentionMilliseconds),
        ]
        loop.makeFutureWithTask { [self] in
            let sent = try await commands.run(
                ThrottleScript.release,
                keys: [throttle.windows, keys.sequence, keys.history, throttle.held, throttle.queue, keys.epoch].map { RESPArgument($0) },
                arguments: arguments)
            statistics.recordRedisCommands(1)
            if let count = sent.integer, count > 0 { scheduleRelease(channel: channel, window: window, namespace: namespace) }
        }.whenFailure { _ in }
    }

    /// Releases every overdue window of the cluster: those whose node died (or lost Redis) before their end.
    func sweepOverdueWindows(_ commands: RedisConnection) async {
        let windows = ThrottleScript.Keys(prefix: configuration.prefix, channel: "").windows
        guard let members = try? await commands.run(ThrottleScript.overdue, keys: [RESPArgument(windows)]).array else { return }
        statistics.recordRedisCommands(1)
        for member in members.compactMap(\.string) {
            guard let (channel, window) = ThrottleScript.parse(member: member),
                let (_, namespace) = try? hub.directory.resolve(channel), namespace.throttleMs > 0
            else { continue }
            release(channel: channel, window: window, namespace: namespace)
        }
    }

    /// Redis is out of reach: this node's subscribers get the message, numbered after the last `seq` the node
    /// saw; the feed continues after it, and on reconnect Redis's `seq` is raised past it.
    ///
    /// Other nodes may number the same channel meanwhile, so these numbers are the node's own stream: at the
    /// channel's first local publish of the outage its stream restarts with a new epoch here, and on reconnect
    /// the stream in Redis restarts too (``resynchronise(_:)``). A client never takes one node's local `seq` for
    /// another's, or for the cluster's (SPEC §5: `recovered` is never true across streams).
    func publishLocally(_ publication: Publication, to target: BrokerTarget) -> Hub.PublishResult {
        let (feedTarget, _, _) = feedTarget(of: publication, target)
        if case .channel(let channel) = feedTarget, state.withLockedValue({ $0.sequencedLocally.insert(feedTarget).inserted }) {
            logger.warning(
                "Redis out of reach: this node numbers the channel itself, on a stream of its own", metadata: ["sb.channel": "\(channel)"])
            hub.restartStream(channel: channel)
        }
        let result = LocalBroker(hub: hub, recipients: recipients).publish(publication, to: target)
        statistics.recordNotForwarded()
        state.withLockedValue { state in
            state.notForwarded += 1
            if let seq = result.seq { state.sequencers[feedTarget, default: FeedSequencer(delivered: seq)].skip(to: seq) }
        }
        return result
    }

    /// Redis names of a feed target: `c:<channel>`, or `all` (which no channel name can be).
    func keys(of target: FeedTarget) -> PublishScript.Keys {
        switch target {
        case .channel(let channel): PublishScript.Keys(prefix: configuration.prefix, channel: "c:\(channel)")
        case .all: PublishScript.Keys(prefix: configuration.prefix, channel: "all")
        }
    }
}
