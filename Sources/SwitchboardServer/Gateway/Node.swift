public import Logging
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

    public init(settings: Settings, tokens: TokenVerifier, logger: Logger) {
        self.settings = settings
        self.tokens = tokens
        self.logger = logger
        self.hub = Hub(directory: ChannelDirectory(namespaces: settings.namespaces))
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

    /// The one publish path of the node, for the API and the WebSocket `publish` frame alike.
    public func publish(_ publication: Publication) throws(ChannelAccessError) -> Hub.PublishResult {
        let (_, namespace) = try hub.directory.resolve(publication.channel)
        return hub.publish(publication, namespace: namespace)
    }
}
