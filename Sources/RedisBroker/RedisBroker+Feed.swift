import Logging
import NIOConcurrencyHelpers
import NIOCore
import RedisClient
import SwitchboardCore

/// The feed: every node's messages, in Redis's order per channel, sequenced (gaps repaired from the history)
/// and delivered to this node's subscribers (SPEC §8).
extension RedisBroker {
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
    func received(_ message: RedisMessage) {
        guard message.pattern != nil else {
            receivedControl(message)
            return
        }
        guard let target = target(ofFeed: message.channel), let feed = PublishScript.parseFeedMessage(message.payload) else { return }
        let (action, commands) = state.withLockedValue { state in
            // The first message of a channel this node has not seen sets where its feed starts.
            let action = state.sequencers[target, default: FeedSequencer(delivered: feed.seq - 1)]
                .received(feed.seq, epoch: feed.epoch, FeedMessage(record: feed.record, tag: feed.tag, epoch: feed.epoch))
            return (action, state.commands)
        }
        perform(action, for: target, on: commands)
    }

    func perform(_ action: FeedSequencer<FeedMessage>.Action, for target: FeedTarget, on commands: RedisConnection?) {
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
    func repair(_ range: ClosedRange<UInt64>, of target: FeedTarget, on commands: RedisConnection?) {
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

    /// `[id, ["f", record, "t", tag]]` of the history stream (of the stream `epoch`) as a seq and its message.
    static func historyEntry(_ entry: RESPValue, epoch: String) -> (seq: UInt64, message: FeedMessage)? {
        guard let parts = entry.array, parts.count == 2, let id = parts[0].string,
            let seq = id.split(separator: "-").first.flatMap({ UInt64($0) }),
            let fields = parts[1].array, fields.count == 4, case .bulkString(let record?) = fields[1],
            let tag = fields[3].string.flatMap(PublishScript.Tag.init(rawValue:))
        else { return nil }
        return (seq, FeedMessage(record: record, tag: tag, epoch: epoch))
    }

    /// Hands one sequenced message to this node's connections.
    func deliver(seq: UInt64, _ message: FeedMessage, to target: FeedTarget) {
        guard let decoded = MessageRecord.decode(message.record, seq: seq) else {
            // Another version's record, or a corrupt one: lost, and counted so (SPEC §13: never silently).
            logger.warning("feed message not readable: dropped", metadata: ["sb.seq": "\(seq)"])
            statistics.recordGap(repaired: 0, lost: 1)
            return
        }
        switch target {
        case .channel(let channel):
            guard let (name, namespace) = try? hub.directory.resolve(channel) else { return }
            // A `userId` target's message: `user:<id>`'s subscribers and every connection of the user.
            let extra = message.tag == .user ? recipients.subscribers(ofUser: String(name.topic ?? "")) : []
            hub.deliverSequenced(decoded, channel: channel, namespace: namespace, epoch: message.epoch, key: nil, extraRecipients: extra)
        case .all:
            hub.deliverGlobalSequenced(decoded, to: recipients.allSubscribers)
        }
    }
}
