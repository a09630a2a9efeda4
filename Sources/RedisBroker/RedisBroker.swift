public import Logging
import NIOConcurrencyHelpers
public import NIOCore
public import RedisClient
public import SwitchboardCore

/// The cluster broker (SPEC §8). Publishes are sequenced in Redis by ``PublishScript`` and every node, the
/// accepting one included, delivers them from its feed in one `seq` order per channel, each once, repairing
/// gaps from the history stream (``FeedSequencer``). `userId` and `all: true` targets are resolved by each
/// node for its own connections. As a ``Cluster`` it also carries commands to every node (``ClusterControl``),
/// keeps per-user leases (``UserLeases``), announces this node and reads the others (``NodeRegistry``), and
/// loads a channel's history for a node that has not seen it.
///
/// The link (one command connection, one pub/sub connection) is kept by a supervisor: when either connection
/// ends, or stops answering the once-a-second `PING`, both are closed and made again with jittered backoff.
/// While the link is down a publish reaches this node's subscribers only, numbered after the last `seq` the
/// node saw (counted as not forwarded); on reconnect the node raises each channel's `seq` in Redis to at least
/// its own, so `seq` never goes backwards, and repairs whatever it missed from the history streams.
public final class RedisBroker: Broker, Cluster, Sendable {
    /// Where Redis is, how this cluster's names start, and the link's timings.
    public struct Configuration: Sendable {
        public var url: RedisURL
        /// Prefix of every key and channel (`redis-prefix`).
        public var prefix: String
        /// This node's id, unique in the cluster.
        public var nodeId: String
        public var connection: RedisConnection.Configuration
        /// How often the node pings both connections, announces itself and reads the other nodes.
        public var heartbeat: Duration
        /// How long a node's announcement lives: a node that stops announcing drops out after this.
        public var registryTTL: Duration
        /// How long a per-user lease lives without a refresh (a dead node's leases end after this).
        public var leaseDuration: Duration
        /// Reconnect delays.
        public var backoff: Backoff
        /// Messages every channel keeps in Redis at least, even without history, so gaps can be repaired.
        public var repairWindow: Int
        /// How long a channel's keys (`seq`, epoch, history) live after its last publish (`channel-ttl-ms`).
        public var channelRetention: Duration

        public init(
            url: RedisURL, prefix: String = "switchboard:", nodeId: String = "node", connection: RedisConnection.Configuration = .init(),
            heartbeat: Duration = .seconds(1), registryTTL: Duration = .seconds(7), leaseDuration: Duration = .seconds(15),
            backoff: Backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5)), repairWindow: Int = 100,
            channelRetention: Duration = .seconds(600)
        ) {
            self.url = url
            self.prefix = prefix
            self.nodeId = nodeId
            self.connection = connection
            self.heartbeat = heartbeat
            self.registryTTL = registryTTL
            self.leaseDuration = leaseDuration
            self.backoff = backoff
            self.repairWindow = repairWindow
            self.channelRetention = channelRetention
        }
    }

    /// A message of the feed as the node delivers it.
    struct FeedMessage: Sendable {
        let payload: ByteBuffer
        let tag: PublishScript.Tag
        let epoch: String
    }

    /// What a feed channel carries: one Switchboard channel's messages (a `userId` target's go to the channel
    /// `user:<id>`, tagged), or the global ones.
    enum FeedTarget: Hashable, Sendable {
        case channel(String)
        case all
    }

    /// A command sent to every node, waiting for their replies.
    private struct Request {
        /// Replies that end the wait early: every other live node's.
        let expected: Int
        /// A connection lives on one node only: the first reply that closed one ends the wait.
        let endsAtFirstHit: Bool
        var replies = 0
        var closed = 0
        let promise: EventLoopPromise<Int>
    }

    private struct State {
        var commands: RedisConnection?
        var feed: RedisSubscription?
        var isUp = false
        var sequencers: [FeedTarget: FeedSequencer<FeedMessage>] = [:]
        /// Retaining channels whose history this node has read from Redis.
        var prepared: Set<String> = []
        weak var member: (any ClusterMember)?
        var peers: [String: JSONValue] = [:]
        var requests: [String: Request] = [:]
        /// This node's leases, by user (renewed on the heartbeat).
        var leases: [String: Set<String>] = [:]
        var notForwarded = 0
        /// Channels this node numbered itself since Redis went out of reach: their streams restart (a new epoch)
        /// on this node at the first local publish and in Redis on reconnect.
        var sequencedLocally: Set<FeedTarget> = []
        var reconnects = 0
        var lost: UInt64 = 0
        var upWaiters: [EventLoopPromise<Void>] = []
        /// Set by ``stop()``: the heartbeat no longer announces this node.
        var isLeaving = false
    }

    public let configuration: Configuration
    private let hub: Hub
    private let logger: Logger
    private let recipients: any LocalRecipients
    private let loop: any EventLoop
    private let state = NIOLockedValueBox(State())
    private let supervisor = NIOLockedValueBox<Task<Void, Never>?>(nil)
    private let control: ClusterControl
    private let registry: NodeRegistry
    private let userLeases: UserLeases

    /// - Parameter logger: where stream restarts are told (SPEC §5: a restart is counted and logged).
    public init(
        hub: Hub, recipients: any LocalRecipients, configuration: Configuration, loop: any EventLoop,
        logger: Logger = Logger(label: "switchboard.redis")
    ) {
        self.logger = logger
        self.hub = hub
        self.recipients = recipients
        self.configuration = configuration
        self.loop = loop
        self.control = ClusterControl(prefix: configuration.prefix)
        self.registry = NodeRegistry(prefix: configuration.prefix, ttlMilliseconds: Self.milliseconds(configuration.registryTTL))
        self.userLeases = UserLeases(prefix: configuration.prefix, leaseMilliseconds: Self.milliseconds(configuration.leaseDuration))
    }

    private var statistics: NodeStatistics { hub.statistics }

    /// Messages the feed lost and the history no longer held, summed over channels.
    public var lostMessages: UInt64 { state.withLockedValue { $0.lost } }

    // MARK: The link

    /// Starts keeping the link (once; later calls only wait) and waits until it is up or `timeout` passed.
    /// - Throws: ``BrokerError`` when the link is not up within `timeout` (the supervisor keeps trying).
    public func start(timeout: Duration = .seconds(5)) async throws {
        supervisor.withLockedValue { task in
            if task == nil { task = Task { await self.superviseLink() } }
        }
        let promise = loop.makePromise(of: Void.self)
        let isUp = state.withLockedValue { state in
            if !state.isUp { state.upWaiters.append(promise) }
            return state.isUp
        }
        if isUp {
            promise.succeed()  // never left pending: NIO traps on a promise dropped uncompleted
            return
        }
        let timer = loop.scheduleTask(in: .nanoseconds(Int64(Self.milliseconds(timeout)) * 1_000_000)) { [self] in
            let waiting = state.withLockedValue { state in
                guard let index = state.upWaiters.firstIndex(where: { $0.futureResult === promise.futureResult }) else { return false }
                state.upWaiters.remove(at: index)
                return true
            }
            if waiting { promise.fail(BrokerError("not up in time")) }
        }
        defer { timer.cancel() }
        do { try await promise.futureResult.get() } catch { throw BrokerError("Redis at \(configuration.url) not reachable") }
    }

    /// Leaves the registry (so `stats` drops this node at once) and closes the link.
    public func stop() async {
        let task = supervisor.withLockedValue { task in
            defer { task = nil }
            return task
        }
        let commands = state.withLockedValue { state in
            state.isLeaving = true
            return state.commands
        }
        if let commands { try? await registry.leave(configuration.nodeId, on: commands) }
        task?.cancel()
        await task?.value
    }

    /// Keeps the link until cancelled: the command connection, and over it the feed. When the feed ends (Redis
    /// cut it, or it stopped answering pings) only the feed is made again, and publishes keep going to Redis
    /// meanwhile (this node's subscribers get them from the history once the feed is back); when the command
    /// connection ends, both are made again. Each attempt after a failure waits a jittered backoff.
    private func superviseLink() async {
        var backoff = configuration.backoff
        var connectedBefore = false
        while !Task.isCancelled {
            guard let commands = try? await connectCommands() else {
                try? await Task.sleep(for: backoff.next())
                continue
            }
            state.withLockedValue { $0.commands = commands }
            while !Task.isCancelled && commands.channel.isActive {
                guard let feed = try? await connectFeed() else {
                    try? await Task.sleep(for: backoff.next())
                    continue
                }
                if connectedBefore {
                    statistics.recordRedisReconnect()
                    state.withLockedValue { $0.reconnects += 1 }
                }
                connectedBefore = true
                backoff.reset()
                await resynchronise(commands)
                markUp(feed)
                await serve(commands, feed)
                markDown(keeping: commands)
                await feed.close()
            }
            markDown(keeping: nil)
            await commands.close()
            if !Task.isCancelled { try? await Task.sleep(for: backoff.next()) }
        }
        markDown(keeping: nil)
    }

    /// The command connection, once Redis answered a `PING` on it (a hung Redis accepts TCP connections but
    /// answers nothing: publishes must not be sent there).
    private func connectCommands() async throws -> RedisConnection {
        let commands = try await RedisConnection.connect(to: configuration.url, configuration: configuration.connection, on: loop)
        do {
            _ = try await commands.send(["PING"])
            statistics.recordRedisCommands(1)
            return commands
        } catch {
            await commands.close()
            throw error
        }
    }

    /// The feed, subscribed to every feed channel, the control channel and this node's reply channel.
    private func connectFeed() async throws -> RedisSubscription {
        let feed = try await RedisSubscription.connect(to: configuration.url, configuration: configuration.connection, on: loop) {
            [weak self] message in self?.received(message)
        }
        do {
            try await feed.psubscribe(["\(configuration.prefix)feed:*"])
            try await feed.subscribe([control.channel, control.replyChannel(of: configuration.nodeId)])
            statistics.recordRedisCommands(2)
            return feed
        } catch {
            await feed.close()
            throw error
        }
    }

    /// After (re)connecting: `seq` in Redis raised to at least what this node delivered or numbered itself
    /// (Redis may have restarted empty), what was missed repaired from the history, and the stored blocks loaded.
    /// A channel this node numbered itself during the outage gets a new stream in Redis (its epoch key goes, so
    /// the next publish starts one): the numbers the nodes gave meanwhile were not one stream.
    private func resynchronise(_ commands: RedisConnection) async {
        let (known, local) = state.withLockedValue { state in (state.sequencers.map { ($0.key, $0.value.delivered) }, state.sequencedLocally) }
        if !known.isEmpty, let results = try? await commands.run(known.map { target, delivered in
            let keys = keys(of: target)
            return (
                Self.raiseScript, [RESPArgument(keys.sequence), RESPArgument(keys.epoch)],
                [RESPArgument(delivered), RESPArgument(retentionMilliseconds), RESPArgument(local.contains(target) ? 1 : 0)]
            )
        }) {
            statistics.recordRedisCommands(known.count)
            state.withLockedValue { state in state.sequencedLocally.subtract(local) }
            for ((target, _), result) in zip(known, results) {
                guard case .success(let reply) = result, let top = reply.integer, top > 0 else { continue }
                // On the feed's loop, like every other sequencer step (see `repair`).
                loop.execute { [self] in
                    let action = state.withLockedValue { $0.sequencers[target]?.caughtUp(to: UInt64(top)) } ?? .init()
                    perform(action, for: target, on: commands)
                }
            }
        }
        if let blocks = try? await control.storedBlocks(on: commands) {
            statistics.recordRedisCommands(1 + 2 * blocks.count)
            let member = state.withLockedValue { $0.member }
            for block in blocks {
                _ = member?.perform(.block(ip: block.ip, seconds: block.seconds, reason: block.reason))
            }
        }
    }

    /// Raises a channel's `seq` counter (KEYS[1]) to at least ARGV[1] (expiring ARGV[2] ms later) and returns it;
    /// with ARGV[3] = 1 also deletes its epoch (KEYS[2]), so that the next publish starts a new stream.
    static let raiseScript = RedisScript(
        """
        if ARGV[3] == '1' then redis.call('DEL', KEYS[2]) end
        local current = tonumber(redis.call('GET', KEYS[1]) or '0')
        local floor = tonumber(ARGV[1])
        if current < floor then
          redis.call('SET', KEYS[1], floor, 'PX', ARGV[2])
          return floor
        end
        return current
        """)

    private func markUp(_ feed: RedisSubscription) {
        let waiters = state.withLockedValue { state in
            state.feed = feed
            state.isUp = true
            defer { state.upWaiters = [] }
            return state.upWaiters
        }
        statistics.recordRedisLink(up: true)
        for waiter in waiters { waiter.succeed() }
    }

    /// The feed is gone; `commands`, if still connected, keeps taking publishes.
    private func markDown(keeping commands: RedisConnection?) {
        state.withLockedValue { state in
            state.commands = commands
            state.feed = nil
            state.isUp = false
        }
        statistics.recordRedisLink(up: false)
    }

    /// The heartbeat, until either connection ends: ping both (a ping that times out closes its connection: a
    /// silently dead link is noticed within the command timeout), announce this node, read the others, renew
    /// leases.
    private func serve(_ commands: RedisConnection, _ feed: RedisSubscription) async {
        let (ended, end) = AsyncStream.makeStream(of: Void.self)
        commands.closeFuture.whenComplete { _ in end.yield() }
        feed.closeFuture.whenComplete { _ in end.yield() }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                // Ends at the first close, or when the supervisor is cancelled.
                for await _ in ended { break }
            }
            group.addTask { [self] in
                while !Task.isCancelled {
                    await self.sweepOverdueWindows(commands)
                    try? await Task.sleep(for: Self.sweepInterval)
                }
            }
            group.addTask { [self] in
                var beat = 0
                while !Task.isCancelled {
                    await self.heartbeat(commands, feed, renewLeases: beat % 5 == 0)
                    beat += 1
                    try? await Task.sleep(for: configuration.heartbeat)
                }
            }
            await group.next()
            group.cancelAll()
        }
        end.finish()
    }

    /// How often every node looks for throttle windows past their end (those of a node that died).
    static let sweepInterval: Duration = .milliseconds(250)

    private func heartbeat(_ commands: RedisConnection, _ feed: RedisSubscription, renewLeases: Bool) async {
        async let pinged: Void? = try? feed.ping()
        let (member, leases, isLeaving) = state.withLockedValue { ($0.member, $0.leases, $0.isLeaving) }
        if !isLeaving {
            let figures = member?.figures() ?? .object([:])
            try? await registry.announce(configuration.nodeId, figures: figures.jsonText, on: commands)
        }
        if let nodes = try? await registry.liveNodes(on: commands) {
            var peers: [String: JSONValue] = [:]
            for (id, text) in nodes where id != configuration.nodeId {
                peers[id] = (try? JSONValue.parse(Array(text.utf8))) ?? .object([:])
            }
            state.withLockedValue { $0.peers = peers }
        }
        forgetIdleChannels()
        var sent = 3
        if renewLeases {
            for (userId, members) in leases {
                try? await userLeases.refresh(Array(members), of: userId, on: commands)
                sent += 1
            }
        }
        _ = await pinged
        statistics.recordRedisCommands(sent)
    }

    /// Forgets the feed state of channels this node no longer holds (SPEC §4: state follows what is published
    /// and watched now): their sequencers, once idle, and whether their history was read. A later message
    /// starts a channel's sequence again where it is.
    private func forgetIdleChannels() {
        state.withLockedValue { state in
            state.sequencers = state.sequencers.filter { target, sequencer in
                guard case .channel(let channel) = target else { return true }
                return !sequencer.isIdle || hub.holds(channel)
            }
            state.prepared = state.prepared.filter { hub.holds($0) }
        }
    }

    private var retentionMilliseconds: Int { Self.milliseconds(configuration.channelRetention) }

    // MARK: Publishing

    public func publish(_ publication: Publication, to target: BrokerTarget) async throws(BrokerError) -> Hub.PublishResult {
        try await publishBatch([(publication, target)])[0].get()
    }

    /// One publish as a script call: ``PublishScript``, or ``ThrottleScript`` on a throttled namespace.
    private struct ScriptedPublish {
        let call: (script: RedisScript, keys: [RESPArgument], arguments: [RESPArgument])
        /// The window, when throttled: a message sent now opens it, and this node releases it at its end.
        let window: (channel: String, window: String, namespace: Namespace)?
        let namespaceName: String
    }

    /// What a publication is on the feed: its feed target, history kept in Redis and tag.
    private func feedTarget(of publication: Publication, _ target: BrokerTarget) -> (FeedTarget, history: Int, PublishScript.Tag) {
        switch target {
        case .channel(let namespace): (.channel(publication.channel), namespace.history, .channel)
        // `user:<id>`: one sequence with that channel's publishes.
        case .user(_, let namespace): (.channel(publication.channel), namespace.history, .user)
        case .all: (.all, 0, .channel)
        }
    }

    private func scripted(_ publication: Publication, to target: BrokerTarget) -> ScriptedPublish {
        let (feedTarget, history, tag) = feedTarget(of: publication, target)
        let keep = max(history, configuration.repairWindow)
        let parts = publication.encodedAroundSeq(timestampMs: Hub.wallClockMilliseconds(), global: feedTarget == .all)
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
                    RESPArgument(keep), RESPArgument(parts.head), RESPArgument(parts.tail), RESPArgument(keys.feed),
                    RESPArgument(tag.rawValue), RESPArgument(ThrottleScript.member(channel: channel, window: window)),
                    RESPArgument(namespace.throttleMs), RESPArgument(window), RESPArgument(StreamEpoch.make()),
                    RESPArgument(retentionMilliseconds),
                ])
            return ScriptedPublish(call: call, window: (channel, window, namespace), namespaceName: namespaceName)
        }
        let call = PublishScript.call(
            PublishScript.Frame(head: parts.head, tail: parts.tail), keys: keys,
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
    private func clusterRecipients(of publication: Publication, _ target: BrokerTarget, peers: [String: JSONValue]) -> Int {
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
    private func scheduleRelease(channel: String, window: String, namespace: Namespace) {
        loop.scheduleTask(in: .milliseconds(Int64(namespace.throttleMs))) { [weak self] in
            self?.release(channel: channel, window: window, namespace: namespace)
        }
    }

    /// Sends what a due window holds; when it sent something the window runs another interval, which this node
    /// then releases too.
    private func release(channel: String, window: String, namespace: Namespace) {
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
    private func sweepOverdueWindows(_ commands: RedisConnection) async {
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
    private func publishLocally(_ publication: Publication, to target: BrokerTarget) -> Hub.PublishResult {
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

    /// A pub/sub message, on the feed connection's loop, in the order Redis sent them.
    private func received(_ message: RedisMessage) {
        guard message.pattern != nil else {
            receivedControl(message)
            return
        }
        guard let target = target(ofFeed: message.channel), let feed = PublishScript.parseFeedMessage(message.payload) else { return }
        let (action, commands) = state.withLockedValue { state in
            // The first message of a channel this node has not seen sets where its feed starts.
            let action = state.sequencers[target, default: FeedSequencer(delivered: feed.seq - 1)]
                .received(feed.seq, epoch: feed.epoch, FeedMessage(payload: feed.frame, tag: feed.tag, epoch: feed.epoch))
            return (action, state.commands)
        }
        perform(action, for: target, on: commands)
    }

    private func perform(_ action: FeedSequencer<FeedMessage>.Action, for target: FeedTarget, on commands: RedisConnection?) {
        if action.restarted {
            // Redis lost or expired the stream, or a node numbered it through an outage: subscribers' `seq` start
            // again under a new epoch (SPEC §5), and no `since` of the old stream is recovered.
            let channel: String = switch target {
            case .channel(let name): name
            case .all: "(global)"
            }
            logger.warning("channel stream restarted with a new epoch", metadata: ["sb.channel": "\(channel)"])
        }
        if action.repaired > 0 || action.lost > 0 {
            statistics.recordGap(repaired: action.repaired, lost: action.lost)
            state.withLockedValue { $0.lost += UInt64(action.lost) }
        }
        for (seq, message) in action.deliver { deliver(seq: seq, message, to: target) }
        if let range = action.repair { repair(range, of: target, on: commands) }
    }

    /// Reads a gap from the history stream and hands what it held to the sequencer.
    ///
    /// What the read found is handed on from `loop`, the feed connection's loop, where every feed message is handled:
    /// the sequencer decides in order under the lock, and running its deliveries on that one loop keeps them in
    /// that order (handed on from the read's own task, a message released by the repair could reach the hub after
    /// a later one, which the hub then drops as stale).
    private func repair(_ range: ClosedRange<UInt64>, of target: FeedTarget, on commands: RedisConnection?) {
        let history = keys(of: target).history
        loop.makeFutureWithTask { [self] () -> [(seq: UInt64, message: FeedMessage)] in
            guard let commands, let entries = try? await commands.send([
                "XRANGE", RESPArgument(history), RESPArgument("\(range.lowerBound)-0"), RESPArgument("\(range.upperBound)-0"),
            ]) else { return [] }
            statistics.recordRedisCommands(1)
            let epoch = state.withLockedValue { $0.sequencers[target]?.epoch } ?? ""
            return (entries.array ?? []).compactMap { Self.historyEntry($0, epoch: epoch) }
        }.whenComplete { [self] result in
            let found = (try? result.get()) ?? []
            let action = state.withLockedValue { $0.sequencers[target]?.repaired(found) } ?? .init()
            perform(action, for: target, on: commands)
        }
    }

    /// `[id, ["f", frame, "t", tag]]` of the history stream (of the stream `epoch`) as a seq and its message.
    static func historyEntry(_ entry: RESPValue, epoch: String) -> (seq: UInt64, message: FeedMessage)? {
        guard let parts = entry.array, parts.count == 2, let id = parts[0].string,
            let seq = id.split(separator: "-").first.flatMap({ UInt64($0) }),
            let fields = parts[1].array, fields.count == 4, case .bulkString(let frame?) = fields[1],
            let tag = fields[3].string.flatMap(PublishScript.Tag.init(rawValue:))
        else { return nil }
        return (seq, FeedMessage(payload: frame, tag: tag, epoch: epoch))
    }

    /// Hands one sequenced message to this node's connections.
    private func deliver(seq: UInt64, _ message: FeedMessage, to target: FeedTarget) {
        switch target {
        case .channel(let channel):
            guard let (name, namespace) = try? hub.directory.resolve(channel) else { return }
            // A `userId` target's message: `user:<id>`'s subscribers and every connection of the user.
            let extra = message.tag == .user ? recipients.subscribers(ofUser: String(name.topic ?? "")) : []
            hub.deliverSequenced(
                channel: channel, namespace: namespace, seq: seq, epoch: message.epoch, payload: message.payload, key: nil,
                extraRecipients: extra)
        case .all:
            hub.deliverGlobalSequenced(seq: seq, payload: message.payload, to: recipients.allSubscribers)
        }
    }

    // MARK: Cluster

    public func attach(_ member: any ClusterMember) {
        state.withLockedValue { $0.member = member }
    }

    public var linkStatus: ClusterLinkStatus {
        state.withLockedValue { ClusterLinkStatus(isUp: $0.isUp, notForwarded: $0.notForwarded, reconnects: $0.reconnects) }
    }

    public func peers() async -> [String: JSONValue] {
        state.withLockedValue { $0.peers }
    }

    /// A command or a reply on the control channels.
    private func receivedControl(_ message: RedisMessage) {
        switch ClusterControl.decode(message.payload) {
        case .command(let command, let origin, let request)? where origin != configuration.nodeId:
            let (member, commands) = state.withLockedValue { ($0.member, $0.commands) }
            let closed = member?.perform(command) ?? 0
            guard let commands else { return }
            let control = self.control
            let nodeId = configuration.nodeId
            loop.makeFutureWithTask {
                try await control.reply(to: request, of: origin, closed: closed, responder: nodeId, on: commands)
            }.whenFailure { _ in }
        case .reply(let request, _, let closed)?:
            let finished = state.withLockedValue { state -> (EventLoopPromise<Int>, Int)? in
                guard var waiting = state.requests[request] else { return nil }
                waiting.replies += 1
                // Each reply is bounded when decoded; the sum saturates rather than trap on a flood of them.
                let (sum, overflow) = waiting.closed.addingReportingOverflow(closed)
                waiting.closed = overflow ? Int.max : sum
                if waiting.replies >= waiting.expected || (waiting.endsAtFirstHit && closed > 0) {
                    state.requests[request] = nil
                    return (waiting.promise, waiting.closed)
                }
                state.requests[request] = waiting
                return nil
            }
            if let (promise, closed) = finished { promise.succeed(closed) }
        default:
            break
        }
    }

    public func perform(_ command: ClusterCommand) async throws(BrokerError) -> Int {
        let (commands, peers) = state.withLockedValue { ($0.isUp ? $0.commands : nil, $0.peers.count) }
        // Without the link the command reaches no other node; a block is loaded by the others when they read
        // the stored blocks, which they do on their next reconnect.
        guard let commands else { throw BrokerError("Redis is not reachable: the command reached this node only") }
        let request = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        let promise = loop.makePromise(of: Int.self)
        var endsAtFirstHit = false
        if case .disconnectConnection = command { endsAtFirstHit = true }
        state.withLockedValue {
            $0.requests[request] = Request(expected: peers, endsAtFirstHit: endsAtFirstHit, promise: promise)
        }
        do {
            try await control.send(command, origin: configuration.nodeId, request: request, on: commands)
            statistics.recordRedisCommands(1)
        } catch {
            state.withLockedValue { $0.requests[request] = nil }
            promise.succeed(0)
            throw BrokerError("Redis: \(error)")
        }
        let answered: Int?
        if peers == 0 {
            state.withLockedValue { $0.requests[request] = nil }
            promise.succeed(0)
            answered = 0
        } else {
            let timer = loop.scheduleTask(in: .seconds(1)) { [self] in
                let waiting = state.withLockedValue { state in
                    defer { state.requests[request] = nil }
                    return state.requests[request]
                }
                if let waiting { waiting.promise.succeed(waiting.closed) }
            }
            answered = try? await promise.futureResult.get()
            timer.cancel()
        }
        return answered ?? 0
    }

    public func acquireUserSlot(userId: String, connectionId: String, limit: Int) async -> Bool {
        guard let commands = state.withLockedValue({ $0.commands }), commands.channel.isActive else { return true }
        let member = leaseMember(connectionId)
        guard let taken = try? await userLeases.acquire(member, of: userId, limit: limit, on: commands) else { return true }
        statistics.recordRedisCommands(1)
        if taken { state.withLockedValue { _ = $0.leases[userId, default: []].insert(member) } }
        return taken
    }

    public func releaseUserSlot(userId: String, connectionId: String) {
        let member = leaseMember(connectionId)
        let commands = state.withLockedValue { state -> RedisConnection? in
            guard state.leases[userId]?.remove(member) != nil else { return nil }
            if state.leases[userId]?.isEmpty == true { state.leases[userId] = nil }
            return state.commands
        }
        guard let commands else { return }
        let leases = userLeases
        loop.makeFutureWithTask { try await leases.release(member, of: userId, on: commands) }.whenFailure { _ in }
    }

    private func leaseMember(_ connectionId: String) -> String { "\(configuration.nodeId)|\(connectionId)" }

    public func needsPreparation(channel: String, namespace: Namespace) -> Bool {
        namespace.retainsMessages && !state.withLockedValue { $0.prepared.contains(channel) }
    }

    public func prepare(channel: String, namespace: Namespace) async {
        guard namespace.retainsMessages, let commands = state.withLockedValue({ $0.commands }), commands.channel.isActive else { return }
        let keys = keys(of: .channel(channel))
        let count = max(namespace.history, 1)
        guard let replies = try? await commands.pipeline([
            ["GET", RESPArgument(keys.sequence)],
            ["GET", RESPArgument(keys.epoch)],
            ["XREVRANGE", RESPArgument(keys.history), "+", "-", "COUNT", RESPArgument(count)],
        ]), replies.count == 3 else { return }
        statistics.recordRedisCommands(3)
        let top = replies[0].string.flatMap { UInt64($0) } ?? 0
        // No epoch: no stream in Redis (none yet, or it expired), nothing to read; the first publish starts one,
        // and the feed is followed from `top` so that what a cut feed misses is still repaired.
        let epoch = replies[1].string.flatMap { $0.isEmpty ? nil : $0 }
        if let epoch {
            let messages = (replies[2].array ?? []).compactMap { Self.historyEntry($0, epoch: epoch) }.map { ($0.seq, $0.message.payload) }
            hub.seed(channel: channel, namespace: namespace, epoch: epoch, lastSeq: top, messages: messages)
        }
        state.withLockedValue { state in
            state.prepared.insert(channel)
            if state.sequencers[.channel(channel)] == nil {
                state.sequencers[.channel(channel)] = FeedSequencer(delivered: top, epoch: epoch)
            }
        }
    }

    private static func milliseconds(_ duration: Duration) -> Int {
        Int(duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000)
    }
}
