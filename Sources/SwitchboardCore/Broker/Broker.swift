/// Where a publish gets its `seq` and how it reaches the connections of every node (ARCHITECTURE's broker
/// seam; SPEC §5, §8).
///
/// The node validates a publish and resolves its target; the broker sequences it and hands the sequenced
/// message to every node's hub, the accepting node included. ``LocalBroker`` does both in memory (one node,
/// no other service); a cluster broker sequences in Redis and delivers through its feed, so the result of a
/// publish may take a round trip: hence `async`. `user` and `all` targets are resolved by each receiving
/// node for its own connections (``LocalRecipients``).
public protocol Broker: Sendable {
    /// Sequences and delivers `publication` (whose `channel` is already the target's channel).
    func publish(_ publication: Publication, to target: BrokerTarget) async throws(BrokerError) -> Hub.PublishResult

    /// Publishes without waiting when this broker can (it sequences in process): the result, or nil when
    /// the caller must use ``publish(_:to:)``. Lets a connection's event loop publish without a task.
    func publishImmediately(_ publication: Publication, to target: BrokerTarget) -> Hub.PublishResult?

    /// Publishes several messages in order, each with its own result (a cluster broker sends them in one
    /// round trip).
    func publishBatch(_ items: [(publication: Publication, target: BrokerTarget)]) async -> [Result<Hub.PublishResult, BrokerError>]
}

extension Broker {
    public func publishImmediately(_ publication: Publication, to target: BrokerTarget) -> Hub.PublishResult? { nil }

    public func publishBatch(_ items: [(publication: Publication, target: BrokerTarget)]) async -> [Result<Hub.PublishResult, BrokerError>] {
        var results: [Result<Hub.PublishResult, BrokerError>] = []
        results.reserveCapacity(items.count)
        for (publication, target) in items {
            do throws(BrokerError) { results.append(.success(try await publish(publication, to: target))) } catch { results.append(.failure(error)) }
        }
        return results
    }
}

/// A publish target resolved by the node: the namespace of its channel is known and allowed.
public enum BrokerTarget: Sendable {
    /// Subscribers of the publication's channel.
    case channel(Namespace)
    /// Every connection of `userId` (channel `user:<id>`, subscribed or not) and that channel's subscribers.
    case user(String, Namespace)
    /// Every connection, as `channel: null`.
    case all
}

/// The connections of this node that `user` and `all` targets reach.
public protocol LocalRecipients: Sendable {
    func subscribers(ofUser userId: String) -> [any Subscriber]
    var allSubscribers: [any Subscriber] { get }
}

/// Why a broker could not take a publish.
public struct BrokerError: Error, Sendable, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// One node, no other service: the hub sequences each channel in memory, under the channel's lock, and fans
/// out at once. Never suspends, so a publish costs what it did before the seam.
public struct LocalBroker: Broker {
    public let hub: Hub
    public let recipients: any LocalRecipients

    public init(hub: Hub, recipients: any LocalRecipients) {
        self.hub = hub
        self.recipients = recipients
    }

    public func publish(_ publication: Publication, to target: BrokerTarget) -> Hub.PublishResult {
        deliver(publication, to: target)
    }

    public func publishImmediately(_ publication: Publication, to target: BrokerTarget) -> Hub.PublishResult? {
        deliver(publication, to: target)
    }

    private func deliver(_ publication: Publication, to target: BrokerTarget) -> Hub.PublishResult {
        switch target {
        case .channel(let namespace):
            hub.publish(publication, namespace: namespace)
        case .user(let userId, let namespace):
            hub.publish(publication, namespace: namespace, extraRecipients: recipients.subscribers(ofUser: userId))
        case .all:
            hub.publishGlobal(publication, to: recipients.allSubscribers)
        }
    }
}
