public import Logging
import NIOConcurrencyHelpers
public import NIOCore
public import RedisClient
public import ServiceLifecycle
public import SwitchboardCore

/// The link to Redis: its two connections (commands, and the feed's pub/sub), supervised and remade with backoff,
/// the resynchronisation after each (re)connect, and the heartbeat (SPEC §8).
extension RedisBroker: Service {
    /// Keeps the link for the life of the node's service group (SPEC §8): the supervisor runs as a child task;
    /// the node waits a few seconds for Redis at start (a node whose Redis is down still starts, degraded, and
    /// keeps trying), and on graceful shutdown leaves the registry (so `stats` drops it at once) and closes the
    /// link. The group shuts it down after the server and the WebSocket drain, so their last messages still go out.
    public func run() async throws {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.superviseLink() }
            if (try? await waitUntilUp(timeout: .seconds(5))) != nil {
                logger.info("joined the cluster", metadata: ["sb.redis": "\(configuration.url)"])
            } else {
                logger.warning("Redis not reachable: serving this node's clients only, and retrying", metadata: ["sb.redis": "\(configuration.url)"])
            }
            try? await gracefulShutdown()
            await leave()
            group.cancelAll()
        }
    }

    /// Starts keeping the link outside a service group (tests, tools: ``stop()`` ends it) and waits until it is up
    /// or `timeout` passed. A node runs the broker as a `Service` instead (``run()``).
    /// - Throws: ``BrokerError`` when the link is not up within `timeout` (the supervisor keeps trying).
    public func start(timeout: Duration = .seconds(5)) async throws {
        supervisor.withLockedValue { task in
            if task == nil { task = Task { await self.superviseLink() } }
        }
        try await waitUntilUp(timeout: timeout)
    }

    /// Waits until the link (kept by ``run()`` or ``start(timeout:)``) is up, or throws when `timeout` passed first.
    public func waitUntilUp(timeout: Duration) async throws {
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

    /// Leaves the registry (so `stats` drops this node at once) and closes the link ``start(timeout:)`` keeps.
    public func stop() async {
        let task = supervisor.withLockedValue { task in
            defer { task = nil }
            return task
        }
        await leave()
        task?.cancel()
        await task?.value
    }

    /// Takes this node out of the registry and stops announcing it.
    func leave() async {
        let commands = state.withLockedValue { state in
            state.isLeaving = true
            return state.commands
        }
        if let commands { try? await registry.leave(configuration.nodeId, on: commands) }
    }

    /// Keeps the link until cancelled: the command connection, and over it the feed. When the feed ends (Redis
    /// cut it, or it stopped answering pings) only the feed is made again, and publishes keep going to Redis
    /// meanwhile (this node's subscribers get them from the history once the feed is back); when the command
    /// connection ends, both are made again. Each attempt after a failure waits a jittered backoff.
    func superviseLink() async {
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
    func connectCommands() async throws -> RedisConnection {
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
    func connectFeed() async throws -> RedisSubscription {
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
    func resynchronise(_ commands: RedisConnection) async {
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

    func markUp(_ feed: RedisSubscription) {
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
    func markDown(keeping commands: RedisConnection?) {
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
    func serve(_ commands: RedisConnection, _ feed: RedisSubscription) async {
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

    func heartbeat(_ commands: RedisConnection, _ feed: RedisSubscription, renewLeases: Bool) async {
        async let pinged: Void? = try? feed.ping()
        let (member, leases, limits, isLeaving) = state.withLockedValue { ($0.member, $0.leases, $0.leaseLimits, $0.isLeaving) }
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
                let limit = limits[userId] ?? members.count
                guard let lost = try? await userLeases.refresh(Array(members), of: userId, limit: limit, on: commands) else { continue }
                sent += 1
                for lease in lost { leaseLost(lease, of: userId, member: member) }
                // A lease released while the refresh was on its way (its connection closed) may have been taken back
                // by it: given back again at once, so a closed connection's slot stays free (SPEC §3).
                let held = state.withLockedValue { $0.leases[userId] ?? [] }
                for lease in members where !held.contains(lease) && !lost.contains(lease) {
                    try? await userLeases.release(lease, of: userId, on: commands)
                    sent += 1
                }
            }
        }
        _ = await pinged
        statistics.recordRedisCommands(sent)
    }

    /// A lease this node could not keep (it expired while the node was paused or cut off, and other nodes filled
    /// the user's pool meanwhile): the connection is over the cluster's per-user limit and is closed (SPEC §8).
    func leaseLost(_ lease: String, of userId: String, member: (any ClusterMember)?) {
        state.withLockedValue { state in
            state.leases[userId]?.remove(lease)
            if state.leases[userId]?.isEmpty == true {
                state.leases[userId] = nil
                state.leaseLimits[userId] = nil
            }
        }
        let prefix = "\(configuration.nodeId)|"
        guard lease.hasPrefix(prefix) else { return }
        logger.warning("user connection limit: a lease expired and the pool is full again; closing the connection", metadata: ["sb.user": "\(userId)"])
        member?.leaseLost(connectionId: String(lease.dropFirst(prefix.count)))
    }

    /// Forgets the feed state of channels this node no longer holds (SPEC §4: state follows what is published
    /// and watched now): their sequencers, once idle, and whether their history was read. A later message
    /// starts a channel's sequence again where it is.
    func forgetIdleChannels() {
        state.withLockedValue { state in
            state.sequencers = state.sequencers.filter { target, sequencer in
                guard case .channel(let channel) = target else { return true }
                return !sequencer.isIdle || hub.holds(channel)
            }
            state.prepared = state.prepared.filter { hub.holds($0) }
        }
    }

    var retentionMilliseconds: Int { Self.milliseconds(configuration.channelRetention) }
}
