public import Logging
public import NIOCore
import NIOPosix
public import Prometheus
import RedisBroker
import RedisClient
public import SwitchboardCore

/// The wiring of one Switchboard node: the components its connections and its API share, built from the settings.
/// It holds no policy (admission and blocks are the ``Gatekeeper``'s, publishing the ``Publisher``'s).
public final class Node: Sendable {
    public let settings: Settings
    public let hub: Hub
    /// What every client session applies (SPEC §3's limits and the namespace table), shared by all of them.
    let sessionRules: ClientSession.Rules
    /// Who may connect, and what failed authentications and blocks do (SPEC §3, §7).
    public let gatekeeper: Gatekeeper
    /// Tokens, and the platform's backend when one is configured (SPEC §2, §14).
    public let auth: Authentication
    public let connections: ConnectionRegistry
    /// What the connection layer shares: the event loops and their resources, the TLS identity, Engine.IO sessions.
    let gateway: Gateway
    /// The one publish path: resolves a target once and hands the publication to the broker.
    public let publisher: Publisher
    /// The cluster this node is part of (cluster mode, SPEC §8), else nil.
    public let cluster: (any Cluster)?
    public let logger: Logger
    /// Counters for `stats` and `/metrics`.
    public let statistics: NodeStatistics
    /// The Prometheus registry `/metrics` renders.
    public let metrics: PrometheusCollectorRegistry

    /// - Parameters:
    ///   - metrics: the registry `/metrics` renders; each node (each test) may have its own.
    ///   - makeBroker: the broker over this node's hub and connections when `redis-url` is not set (default:
    ///     ``LocalBroker``); with it, the node is a cluster node over ``RedisBroker``.
    /// - Throws: when the audit log file cannot be opened.
    public init(
        settings: Settings, tokens: TokenVerifier, logger: Logger,
        metrics: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        makeBroker: (Hub, any LocalRecipients) -> any Broker = { LocalBroker(hub: $0, recipients: $1) }
    ) throws {
        self.settings = settings
        let tls = try settings.tlsCert.map { certificate in
            try TLSCertificates(certificatePath: certificate, keyPath: settings.tlsKey ?? "")
        }
        let backend = settings.connectProxyURL == nil && settings.subscribeProxyURL == nil ? nil : PlatformBackend(
            configuration: .init(connectURL: settings.connectProxyURL, subscribeURL: settings.subscribeProxyURL, timeout: settings.proxyTimeout),
            eventLoopGroup: eventLoopGroup)
        self.auth = Authentication(tokens: tokens, backend: backend)
        self.logger = logger
        self.metrics = metrics
        var factory = PrometheusMetricsFactory(registry: metrics)
        factory.durationHistogramBuckets[NodeStatistics.latencyMetricName] = Self.latencyBuckets
        let redisURL: RedisURL?
        do {
            redisURL = try settings.redisURL.map { try RedisURL(parsing: $0) }
        } catch {
            throw SettingsError("redis-url: \(error)")
        }
        self.statistics = NodeStatistics(
            namespaces: settings.namespaces.map(\.name), factory: factory, clustered: redisURL != nil, tls: settings.tlsCert != nil)
        self.hub = Hub(
            directory: ChannelDirectory(namespaces: settings.namespaces), scheduler: eventLoopGroup.next(), statistics: statistics,
            retention: TimeAmount(settings.channelTTL))
        let statistics = self.statistics
        let loopConfiguration = LoopResources.Configuration(
            batchDelay: TimeAmount(settings.batchWriteDelay), heartbeatInterval: TimeAmount(settings.heartbeat),
            compression: settings.compression, compressionMinimumBytes: settings.compressionMinBytes,
            requestTimeout: TimeAmount(settings.requestTimeout))
        self.gateway = Gateway(eventLoopGroup: eventLoopGroup, tls: tls) {
            LoopResources(eventLoop: $0, configuration: loopConfiguration, statistics: statistics)
        }
        let audit = try AuditLog(path: settings.auditLog, logger: logger, statistics: statistics)
        self.connections = ConnectionRegistry()
        let broker: any Broker
        if let redisURL {
            let redisBroker = RedisBroker(
                hub: hub, recipients: connections,
                configuration: .init(
                    url: redisURL, prefix: settings.redisPrefix, nodeId: settings.nodeId,
                    channelRetention: settings.channelTTL),
                loop: eventLoopGroup.next(), logger: logger)
            broker = redisBroker
            self.cluster = redisBroker
        } else {
            broker = makeBroker(hub, connections)
            self.cluster = nil
        }
        self.publisher = Publisher(broker: broker, directory: hub.directory)
        self.sessionRules = ClientSession.Rules(
            configuration: .init(
                allowAnonymous: settings.allowAnonymous, maxSubscriptions: settings.maxSubscriptions,
                messageRate: settings.messageRate, messageBurst: settings.messageBurst, authTimeout: settings.authTimeout,
                preparesChannels: redisURL != nil, hasSubscribeProxy: settings.subscribeProxyURL != nil,
                hasConnectProxy: settings.connectProxyURL != nil),
            directory: hub.directory)
        self.gatekeeper = Gatekeeper(
            configuration: .init(blockAfterFailures: settings.blockAfterFailures, blockDuration: settings.blockDuration),
            pools: ConnectionPools(
                limits: .init(global: settings.maxConnections, perIP: settings.maxConnectionsPerIP, perUser: settings.maxConnectionsPerUser)),
            blockList: BlockList(), connectRateLimiter: KeyedRateLimiter(perMinute: settings.connectRatePerIP),
            addresses: ClientAddresses(trustedProxies: settings.trustedProxies, ipv6PrefixLength: settings.ipv6PrefixLength),
            httpConnections: HTTPConnectionCounts(limit: settings.maxHTTPConnectionsPerIP), audit: audit, connections: connections,
            cluster: cluster, statistics: statistics, logger: logger)
        cluster?.attach(self)
    }

    /// Buckets of the publish-to-write latency histogram: 100 µs to 5 s.
    static let latencyBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .seconds(5),
    ]

    /// Seconds since this node started.
    public var uptimeSeconds: Int { Int((ContinuousClock.now - statistics.startedAt).components.seconds) }

    /// The node's event loops (the API's health check pings each).
    public var eventLoopGroup: any EventLoopGroup { gateway.eventLoopGroup }
}
