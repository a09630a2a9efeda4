public import SwitchboardCore

/// The node's one publish path (SPEC §6 broadcasts, §3 `publish` frames, the demo feed): a target is resolved once,
/// into a ``Publisher/Resolved`` publication, and handed to the broker.
public struct Publisher: Sendable {
    /// Sequences publishes and delivers them (``LocalBroker``: in this process; `RedisBroker` in cluster mode).
    public let broker: any Broker
    let directory: ChannelDirectory

    /// Where a broadcast goes (SPEC §6).
    public enum Target: Sendable, Equatable, CustomStringConvertible {
        case channel(String)
        /// Every connection of the user, as channel `user:<id>`, subscribed or not.
        case user(String)
        /// Every connection, as `channel: null`.
        case all

        public var description: String {
            switch self {
            case .channel(let name): "channel \(name)"
            case .user(let userId): "user \(userId)"
            case .all: "all connections"
            }
        }
    }

    /// Why a publish was refused: its target (``ChannelAccessError``) or the broker.
    public enum PublishError: Error, Sendable {
        case target(ChannelAccessError)
        case broker(BrokerError)
    }

    /// A publication on its target's channel, with the target as the broker takes it.
    public struct Resolved: Sendable {
        public let publication: Publication
        public let target: BrokerTarget
    }

    /// The publication as it will be sent (on the target's channel; its own `channel` is ignored for `.user` and
    /// `.all`) and the target as the broker takes it.
    public func resolve(_ publication: Publication, to target: Target) throws(PublishError) -> Resolved {
        var publication = publication
        do {
            switch target {
            case .channel(let channel):
                publication.channel = channel
                return Resolved(publication: publication, target: .channel(try directory.resolve(channel).1))
            case .user(let userId):
                publication.channel = "user:\(userId)"
                return Resolved(publication: publication, target: .user(userId, try directory.resolve(publication.channel).1))
            case .all:
                return Resolved(publication: publication, target: .all)
            }
        } catch {
            throw .target(error)
        }
    }

    /// Publishes a resolved publication.
    public func publish(_ resolved: Resolved) async throws(PublishError) -> Hub.PublishResult {
        do {
            return try await broker.publish(resolved.publication, to: resolved.target)
        } catch {
            throw .broker(error)
        }
    }

    /// Resolves and publishes.
    public func publish(_ publication: Publication, to target: Target) async throws(PublishError) -> Hub.PublishResult {
        try await publish(try resolve(publication, to: target))
    }

    /// Publishes on the publication's own channel.
    public func publish(_ publication: Publication) async throws(PublishError) -> Hub.PublishResult {
        try await publish(publication, to: .channel(publication.channel))
    }

    /// The result at once when the broker sequences in this process; nil when it needs a round trip (then
    /// ``publish(_:)-(Resolved)`` it).
    func publishImmediately(_ resolved: Resolved) -> Hub.PublishResult? {
        broker.publishImmediately(resolved.publication, to: resolved.target)
    }

    /// Publishes several resolved messages in order, each with its own result; a cluster node sends them to Redis in
    /// one round trip.
    public func publishBatch(_ items: [Resolved]) async -> [Result<Hub.PublishResult, PublishError>] {
        await broker.publishBatch(items.map { ($0.publication, $0.target) }).map { $0.mapError { .broker($0) } }
    }
}

extension Publisher.PublishError {
    /// The wire error code for this refusal.
    var code: ErrorCode {
        switch self {
        case .target(let error): error.code
        case .broker: .internalError
        }
    }

    var message: String {
        switch self {
        case .target(let error): error.message
        case .broker(let error): "publish failed: \(error.description)"
        }
    }
}
