public import Logging
public import NIOCore
import NIOPosix
public import SwitchboardCore

/// Everything one Switchboard node shares between its connections and its API.
public final class Node: Sendable {
    public let settings: Settings
    public let hub: Hub
    public let pools: ConnectionPools
    public let blockList: BlockList
    public let connectRateLimiter: KeyedRateLimiter
    public let tokens: TokenVerifier
    public let connections: ConnectionRegistry
    public let logger: Logger
    public let startedAt: ContinuousClock.Instant

    public init(
        settings: Settings, tokens: TokenVerifier, logger: Logger,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.settings = settings
        self.tokens = tokens
        self.logger = logger
        self.hub = Hub(directory: ChannelDirectory(namespaces: settings.namespaces), scheduler: eventLoopGroup.next())
        self.pools = ConnectionPools(
            limits: .init(
                global: settings.maxConnections, perIP: settings.maxConnectionsPerIP,
                perUser: settings.maxConnectionsPerUser))
        self.blockList = BlockList()
        self.connectRateLimiter = KeyedRateLimiter(perMinute: settings.connectRatePerIP)
        self.connections = ConnectionRegistry()
        self.startedAt = .now
    }

    /// Seconds since this node started.
    public var uptimeSeconds: Int { Int((ContinuousClock.now - startedAt).components.seconds) }

    /// Where a broadcast goes (SPEC §6).
    public enum Target: Sendable, Equatable {
        case channel(String)
        /// Every connection of the user, as channel `user:<id>`, subscribed or not.
        case user(String)
        /// Every connection, as `channel: null`.
        case all
    }

    /// The one publish path of the node, for the API and the WebSocket `publish` frame alike.
    /// The publication's `channel` is ignored for `.user` and `.all` targets.
    public func publish(_ publication: Publication, to target: Target) throws(ChannelAccessError) -> Hub.PublishResult {
        switch target {
        case .channel(let channel):
            var publication = publication
            publication.channel = channel
            let (_, namespace) = try hub.directory.resolve(channel)
            return hub.publish(publication, namespace: namespace)
        case .user(let userId):
            var publication = publication
            publication.channel = "user:\(userId)"
            let (_, namespace) = try hub.directory.resolve(publication.channel)
            return hub.publish(publication, namespace: namespace, extraRecipients: connections.connections(ofUser: userId))
        case .all:
            return hub.publishGlobal(publication, to: connections.all)
        }
    }

    /// Publishes on the publication's own channel.
    public func publish(_ publication: Publication) throws(ChannelAccessError) -> Hub.PublishResult {
        try publish(publication, to: .channel(publication.channel))
    }
}
