public import Logging
import NIOConcurrencyHelpers
public import NIOCore
public import RedisClient
public import SwitchboardCore

/// The cluster's commands (disconnects, blocks), announcements, user leases and channel preparation (SPEC §8).
extension RedisBroker {
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
    func receivedControl(_ message: RedisMessage) {
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
        if taken {
            state.withLockedValue { state in
                state.leases[userId, default: []].insert(member)
                state.leaseLimits[userId] = limit
            }
        }
        return taken
    }

    public func countPerMinute(_ event: ClusterRateEvent, key: String) async -> Int? {
        guard let commands = state.withLockedValue({ $0.commands }), commands.channel.isActive,
            let count = try? await rates.count(event, key: key, on: commands)
        else { return nil }
        statistics.recordRedisCommands(1)
        return count
    }

    public func releaseUserSlot(userId: String, connectionId: String) {
        let member = leaseMember(connectionId)
        let commands = state.withLockedValue { state -> RedisConnection? in
            guard state.leases[userId]?.remove(member) != nil else { return nil }
            if state.leases[userId]?.isEmpty == true {
                state.leases[userId] = nil
                state.leaseLimits[userId] = nil
            }
            return state.commands
        }
        guard let commands else { return }
        let leases = userLeases
        loop.makeFutureWithTask { try await leases.release(member, of: userId, on: commands) }.whenFailure { _ in }
    }

    func leaseMember(_ connectionId: String) -> String { "\(configuration.nodeId)|\(connectionId)" }

    public func needsPreparation(channel: String, namespace: Namespace) -> Bool {
        namespace.retainsMessages && !state.withLockedValue { $0.prepared.contains(channel) }
    }

    public func prepare(channel: String, namespace: Namespace, forSubscriber: Bool) async {
        guard namespace.retainsMessages, let commands = state.withLockedValue({ $0.commands }), commands.channel.isActive else { return }
        let keys = keys(of: .channel(channel))
        let count = max(namespace.history, 1)
        let reply: RESPValue
        do {
            reply = try await commands.run(
                PublishScript.prepareScript, keys: [RESPArgument(keys.sequence), RESPArgument(keys.epoch), RESPArgument(keys.history)],
                arguments: [RESPArgument(forSubscriber ? StreamEpoch.make() : ""), RESPArgument(retentionMilliseconds), RESPArgument(count)])
        } catch {
            return
        }
        statistics.recordRedisCommands(1)
        guard let parts = reply.array, parts.count == 3 else { return }
        let top = parts[0].string.flatMap { UInt64($0) } ?? parts[0].integer.flatMap { UInt64(exactly: $0) } ?? 0
        // No epoch: no stream in Redis and none started (a read); the first publish starts one, and the feed is
        // followed from `top` so that what a cut feed misses is still repaired.
        let epoch = parts[1].string.flatMap { $0.isEmpty ? nil : $0 }
        if let epoch {
            let messages = (parts[2].array ?? []).compactMap { Self.historyEntry($0, epoch: epoch) }
                .compactMap { MessageRecord.decode($0.message.record, seq: $0.seq) }
            // The cluster's stream (started here for a subscriber if it had none): every node's subscribers get its epoch.
            hub.seed(channel: channel, namespace: namespace, epoch: epoch, lastSeq: top, messages: messages)
        }
        state.withLockedValue { state in
            // A read that found no stream leaves the channel for a subscriber's preparation to start one.
            if epoch != nil { state.prepared.insert(channel) }
            if state.sequencers[.channel(channel)] == nil {
                state.sequencers[.channel(channel)] = FeedSequencer(delivered: top, epoch: epoch)
            }
        }
    }
}
