public import NIOCore
import Synchronization

/// Channels, their subscribers and the publish path (SPEC §4, §5).
///
/// A publish is encoded once and handed, as the same bytes, to every subscriber's outbound queue;
/// nothing here ever waits for a socket.
public final class Hub: Sendable {
    public let directory: ChannelDirectory
    private let channels = Mutex<[String: ChannelState]>([:])
    private let clock: @Sendable () -> Int64

    /// - Parameters:
    ///   - directory: the namespace table.
    ///   - clock: milliseconds since the epoch, stamped on each message as `ts`.
    public init(directory: ChannelDirectory, clock: @escaping @Sendable () -> Int64 = Hub.wallClockMilliseconds) {
        self.directory = directory
        self.clock = clock
    }

    /// The result of a publish: the message's `seq` on its channel and how many subscribers it was queued for.
    public struct PublishResult: Sendable, Equatable {
        public var seq: UInt64
        public var recipients: Int
    }

    /// Publishes on a channel whose name the caller has already resolved.
    ///
    /// A channel that keeps nothing (no history, no last value) and has no subscriber is not created:
    /// nobody receives the message and the result is `seq` 0.
    public func publish(_ publication: Publication, namespace: Namespace) -> PublishResult {
        let channel: ChannelState? = channels.withLock { channels in
            if let existing = channels[publication.channel] { return existing }
            guard namespace.retainsMessages else { return nil }
            let created = ChannelState(name: publication.channel, namespace: namespace)
            channels[publication.channel] = created
            return created
        }
        guard let channel else { return PublishResult(seq: 0, recipients: 0) }
        let (seq, recipients) = channel.publish(publication, timestampMs: clock())
        return PublishResult(seq: seq, recipients: recipients)
    }

    /// Subscribes; `reply` builds the `subscribed` frame, queued before any replayed message or last value.
    /// - Returns: false when `subscriber` was already subscribed (the reply is sent again, nothing else).
    @discardableResult
    public func subscribe(
        _ subscriber: any Subscriber,
        to channel: ChannelName,
        namespace: Namespace,
        since: UInt64? = nil,
        reply: (_ recovered: Bool?) -> Delivery
    ) -> Bool {
        while true {
            let state = channels.withLock { channels in
                if let existing = channels[channel.description] { return existing }
                let created = ChannelState(name: channel.description, namespace: namespace)
                channels[channel.description] = created
                return created
            }
            switch state.subscribe(subscriber, since: since, reply: reply) {
            case .subscribed: return true
            case .alreadySubscribed: return false
            case .closed: continue
            }
        }
    }

    /// Unsubscribes; an empty channel that retains nothing is freed. Returns whether it was subscribed.
    @discardableResult
    public func unsubscribe(_ subscriber: any Subscriber, from channel: String) -> Bool {
        channels.withLock { channels in
            guard let state = channels[channel] else { return false }
            let (removed, closed) = state.unsubscribe(subscriber)
            if closed { channels[channel] = nil }
            return removed
        }
    }

    /// Number of live channels (including empty ones that retain messages).
    public var channelCount: Int { channels.withLock { $0.count } }

    /// Live channels with their subscriber counts.
    public func channelSummaries() -> [(name: String, subscribers: Int)] {
        let states = channels.withLock { Array($0.values) }
        return states.map { ($0.name, $0.subscriberCount) }.sorted { $0.name < $1.name }
    }

    @Sendable public static func wallClockMilliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
