public import Logging
public import NIOCore
import NIOPosix
public import Prometheus
import RedisBroker
import RedisClient
public import SwitchboardCore
import Synchronization

/// Everything one Switchboard node shares between its connections and its API.
public final class Node: Sendable {
    public let settings: Settings
    public let hub: Hub
    /// What every client session applies (SPEC §3's limits and the namespace table), shared by all of them.
    let sessionRules: ClientSession.Rules
    /// Who may connect, and what failed authentications and blocks do (SPEC §3, §7).
    public let gatekeeper: Gatekeeper
    public let tokens: TokenVerifier
    public let connections: ConnectionRegistry
    /// The TLS identity when `tls-cert` is set (SPEC §12); its connections never write to the socket directly.
    public let tls: TLSCertificates?
    /// Open Engine.IO sessions by `sid` (SPEC §9), admitted or not yet.
    let engineSessions = EngineSessions()
    /// `/ws` upgrades answered without NIO's HTTP pipeline (``DirectUpgradeHandler``), accepted or refused.
    let directUpgrades = Atomic<Int>(0)
    /// Connections handed to a Swift task of their own (``GatewayServer``): those serving HTTP, never WebSockets.
    let httpConnectionTasks = Atomic<Int>(0)
    /// Sequences publishes and delivers them (``LocalBroker``: in this process; ``RedisBroker`` in cluster mode).
    public let broker: any Broker
    /// The cluster this node is part of (cluster mode, SPEC §8), else nil.
    public let cluster: (any Cluster)?
    public let logger: Logger
    public let startedAt: ContinuousClock.Instant
    /// Counters for `stats` and `/metrics`.
    public let statistics: NodeStatistics
    /// The Prometheus registry `/metrics` renders.
    public let metrics: PrometheusCollectorRegistry
    /// The node's event loops (the API's health check pings each).
    public let eventLoopGroup: any EventLoopGroup
    /// What the connections of each event loop share (drains, heartbeats, lanes, compressor, upgrade line, …).
    let loops: PerEventLoop<LoopResources>

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
        self.tls = try settings.tlsCert.map { certificate in
            try TLSCertificates(certificatePath: certificate, keyPath: settings.tlsKey ?? "")
        }
        self.tokens = tokens
        self.logger = logger
        self.metrics = metrics
        self.eventLoopGroup = eventLoopGroup
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
            retention: .milliseconds(Int64(settings.channelTtlMs)))
        let statistics = self.statistics
        let loopConfiguration = LoopResources.Configuration(
            batchDelay: .milliseconds(Int64(settings.batchWriteDelayMs)), heartbeatInterval: .milliseconds(Int64(settings.heartbeatMs)),
            compression: settings.compression, compressionMinimumBytes: settings.compressionMinBytes,
            requestTimeout: .milliseconds(Int64(settings.requestTimeoutMs)))
        self.loops = PerEventLoop(group: eventLoopGroup) {
            LoopResources(eventLoop: $0, configuration: loopConfiguration, statistics: statistics)
        }
        let audit = try AuditLog(path: settings.auditLog, logger: logger, statistics: statistics)
        self.connections = ConnectionRegistry()
        if let redisURL {
            let broker = RedisBroker(
                hub: hub, recipients: connections,
                configuration: .init(
                    url: redisURL, prefix: settings.redisPrefix, nodeId: settings.nodeId,
                    channelRetention: .milliseconds(settings.channelTtlMs)),
                loop: eventLoopGroup.next(), logger: logger)
            self.broker = broker
            self.cluster = broker
        } else {
            self.broker = makeBroker(hub, connections)
            self.cluster = nil
        }
        self.sessionRules = ClientSession.Rules(
            configuration: .init(
                allowAnonymous: settings.allowAnonymous, maxSubscriptions: settings.maxSubscriptions,
                messageRate: settings.messageRate, messageBurst: settings.messageBurst, authTimeoutMs: settings.authTimeoutMs,
                preparesChannels: redisURL != nil),
            directory: hub.directory)
        self.gatekeeper = Gatekeeper(
            configuration: .init(blockAfterFailures: settings.blockAfterFailures, blockSeconds: settings.blockSeconds),
            pools: ConnectionPools(
                limits: .init(global: settings.maxConnections, perIP: settings.maxConnectionsPerIP, perUser: settings.maxConnectionsPerUser)),
            blockList: BlockList(), connectRateLimiter: KeyedRateLimiter(perMinute: settings.connectRatePerIP),
            addresses: ClientAddresses(trustedProxies: settings.trustedProxies, ipv6PrefixLength: settings.ipv6PrefixLength),
            httpConnections: HTTPConnectionCounts(limit: settings.maxHTTPConnectionsPerIP), audit: audit, connections: connections,
            cluster: cluster, statistics: statistics, logger: logger)
        self.startedAt = .now
        cluster?.attach(self)
    }

    /// Buckets of the publish-to-write latency histogram: 100 µs to 5 s.
    static let latencyBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .seconds(5),
    ]

    /// Seconds since this node started.
    public var uptimeSeconds: Int { Int((ContinuousClock.now - startedAt).components.seconds) }

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

    /// The one publish path of the node, for the API and the WebSocket `publish` frame alike: resolves the
    /// target and hands the publication to the broker. The publication's `channel` is ignored for `.user`
    /// and `.all` targets.
    public func publish(_ publication: Publication, to target: Target) async throws(PublishError) -> Hub.PublishResult {
        let (publication, resolved) = try resolve(publication, to: target)
        do {
            return try await broker.publish(publication, to: resolved)
        } catch {
            throw .broker(error)
        }
    }

    /// Publishes several messages in order, each with its own result; a cluster node sends them to Redis in one
    /// round trip.
    public func publishBatch(_ items: [(publication: Publication, target: Target)]) async -> [Result<Hub.PublishResult, PublishError>] {
        var results = [Result<Hub.PublishResult, PublishError>?](repeating: nil, count: items.count)
        var resolved: [(publication: Publication, target: BrokerTarget)] = []
        var positions: [Int] = []
        for (index, item) in items.enumerated() {
            do throws(PublishError) {
                resolved.append(try resolve(item.publication, to: item.target))
                positions.append(index)
            } catch {
                results[index] = .failure(error)
            }
        }
        for (index, result) in zip(positions, await broker.publishBatch(resolved)) {
            results[index] = result.mapError { .broker($0) }
        }
        return results.map { $0 ?? .failure(.broker(BrokerError("not published"))) }
    }

    /// Publishes on the publication's own channel.
    public func publish(_ publication: Publication) async throws(PublishError) -> Hub.PublishResult {
        try await publish(publication, to: .channel(publication.channel))
    }

    /// The publication as it will be sent (on the target's channel) and the target as the broker takes it.
    func resolve(_ publication: Publication, to target: Target) throws(PublishError) -> (Publication, BrokerTarget) {
        var publication = publication
        do {
            switch target {
            case .channel(let channel):
                publication.channel = channel
                return (publication, .channel(try hub.directory.resolve(channel).1))
            case .user(let userId):
                publication.channel = "user:\(userId)"
                return (publication, .user(userId, try hub.directory.resolve(publication.channel).1))
            case .all:
                return (publication, .all)
            }
        } catch {
            throw .target(error)
        }
    }
}
