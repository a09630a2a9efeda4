public import CoreMetrics
import DequeModule
import Synchronization

/// Counters kept as events happen, read in O(1) by `stats` and exported as metrics (SPEC §6, §11).
///
/// Every value lives in an atomic (for `stats`) and in a swift-metrics handle made from the factory given
/// at init (for `/metrics`): tests give each node its own factory, `main` bootstraps the process's.
/// Labels are bounded: role, namespace, reason, result, limit; never topic, user or IP.
public final class NodeStatistics: Sendable {
    /// Why a message was dropped.
    public enum DropReason: String, Sendable, CaseIterable {
        /// Replaced inside a throttle window by a newer message with the same key.
        case conflated
        /// Replaced in a full outbound buffer by a newer message with the same key.
        case slowConsumerConflated = "slow_consumer_conflated"
        /// Discarded with a slow consumer's queue when it was closed with 4009.
        case slowConsumer = "slow_consumer"
    }

    /// Outcome of an upgrade attempt.
    public enum AttemptResult: String, Sendable, CaseIterable {
        case accepted
        case ipBlocked = "ip_blocked"
        case originNotAllowed = "origin_not_allowed"
        case rateLimited = "rate_limited"
        case unauthorized
        case connectionLimit = "connection_limit"
        case badRequest = "bad_request"
        /// The platform's backend did not answer (SPEC §14).
        case unavailable
    }

    /// Which limit was hit.
    public enum Limit: String, Sendable, CaseIterable {
        case connectRate = "connect_rate"
        case messageRate = "message_rate"
        case messageAbuse = "message_abuse"
    }

    // MARK: Values read by stats

    let connectionsByRole: [Role: Tally]
    let connectionsByTransport: [Transport: Tally]
    let peakConnections = Atomic<Int>(0)
    let upgradesAccepted = Atomic<Int>(0)
    let subscriptionsTotal = Atomic<Int>(0)
    /// When the node started counting (its uptime).
    public let startedAt = ContinuousClock.now
    let published = Atomic<Int>(0)
    let delivered = Atomic<Int>(0)
    let dropped = Atomic<Int>(0)
    let bytesIn = Atomic<Int>(0)
    let bytesOut = Atomic<Int>(0)
    let compressedBytesOut = Atomic<Int>(0)
    let compressedFramesRawBytes = Atomic<Int>(0)
    let authSuccesses = Atomic<Int>(0)
    let authFailures = Atomic<Int>(0)
    let rateLimitedByLimit: [Limit: Tally]
    let slowConsumerCloses = Atomic<Int>(0)
    let streamRestarts = Atomic<Int>(0)
    let auditLinesDropped = Atomic<Int>(0)
    let securityEventsByKind: [SecurityEventKind: Tally]

    // MARK: Metrics

    struct NamespaceMetrics: Sendable {
        let published: Counter
        let delivered: Counter
        let dropped: [DropReason: Counter]
        let subscriptions: Meter
    }

    let namespaceMetrics: [String: NamespaceMetrics]
    /// The wire protocol of a connection, the `transport` label of `switchboard_connections` (SPEC §9).
    public enum Transport: String, CaseIterable, Sendable {
        /// A native `/ws` connection.
        case websocket
        /// A Socket.IO session, over long-polling or WebSocket (one value: a session's upgrade does not move it).
        case socketio
    }

    struct ConnectionKey: Hashable {
        let role: Role
        let transport: Transport
    }

    let connectionsGauge: [ConnectionKey: Meter]
    let attemptCounters: [AttemptResult: Counter]
    let rateLimitedCounters: [Limit: Counter]
    let bytesReceivedCounter: Counter
    let bytesSentCounter: Counter
    let compressedBytesSentCounter: Counter
    let compressedRawBytesCounter: Counter
    let authFailuresCounter: Counter
    let slowConsumerCounter: Counter
    let streamRestartCounter: Counter
    let auditDroppedCounter: Counter
    /// Open TLS connections (SPEC §12), on a node that serves TLS.
    let tlsConnectionsGauge: Meter?
    let securityEventCounters: [SecurityEventKind: Counter]
    let latency: CoreMetrics.Timer
    let redisLink: RedisLinkMetrics?

    /// The Redis link's metrics, made in cluster mode only (a single node exports none of them).
    struct RedisLinkMetrics: Sendable {
        let up: Meter
        let reconnects: Counter
        let commands: Counter
        let notForwarded: Counter
        let gapRepaired: Counter
        let gapLost: Counter

        init(factory: any MetricsFactory) {
            up = Meter(label: "switchboard_redis_up", factory: factory)
            reconnects = Counter(label: "switchboard_redis_reconnects_total", factory: factory)
            commands = Counter(label: "switchboard_redis_commands_total", factory: factory)
            notForwarded = Counter(label: "switchboard_redis_not_forwarded_total", factory: factory)
            gapRepaired = Counter(label: "switchboard_redis_gap_messages_total", dimensions: [("result", "repaired")], factory: factory)
            gapLost = Counter(label: "switchboard_redis_gap_messages_total", dimensions: [("result", "lost")], factory: factory)
            up.set(0)
        }
    }

    /// Samples of (published, delivered) once a second, for per-second rates over ``rateWindow``.
    let samples = Mutex<Deque<(at: ContinuousClock.Instant, published: Int, delivered: Int, accepted: Int)>>([])
    /// The sliding window of the per-second rates.
    public static let rateWindow: Duration = .seconds(10)

    /// The histogram's name, for configuring its buckets in the factory.
    public static let latencyMetricName = "switchboard_delivery_latency_seconds"

    /// - Parameters:
    ///   - namespaces: the configured namespace names (the only values of the `namespace` label).
    ///   - factory: where the metrics live.
    ///   - clustered: whether the node is in cluster mode (it then exports the Redis link's metrics).
    ///   - tls: whether the node serves TLS (every connection then counts as a TLS one).
    public init(namespaces: [String], factory: any MetricsFactory, clustered: Bool = false, tls: Bool = false) {
        tlsConnectionsGauge = tls ? Meter(label: "switchboard_tls_connections", factory: factory) : nil
        redisLink = clustered ? RedisLinkMetrics(factory: factory) : nil
        connectionsByRole = Dictionary(uniqueKeysWithValues: Role.allCases.map { ($0, Tally()) })
        connectionsByTransport = Dictionary(uniqueKeysWithValues: Transport.allCases.map { ($0, Tally()) })
        rateLimitedByLimit = Dictionary(uniqueKeysWithValues: Limit.allCases.map { ($0, Tally()) })
        securityEventsByKind = Dictionary(uniqueKeysWithValues: SecurityEventKind.allCases.map { ($0, Tally()) })
        streamRestartCounter = Counter(label: "switchboard_stream_restarts_total", factory: factory)
        auditDroppedCounter = Counter(label: "switchboard_audit_lines_dropped_total", factory: factory)
        securityEventCounters = Dictionary(uniqueKeysWithValues: SecurityEventKind.allCases.map { kind in
            (kind, Counter(label: "switchboard_security_events_total", dimensions: [("event", kind.rawValue)], factory: factory))
        })
        namespaceMetrics = Dictionary(uniqueKeysWithValues: namespaces.map { name in
            let label = [("namespace", name)]
            return (name, NamespaceMetrics(
                published: Counter(label: "switchboard_messages_published_total", dimensions: label, factory: factory),
                delivered: Counter(label: "switchboard_messages_delivered_total", dimensions: label, factory: factory),
                dropped: Dictionary(uniqueKeysWithValues: DropReason.allCases.map { reason in
                    (reason, Counter(
                        label: "switchboard_messages_dropped_total", dimensions: label + [("reason", reason.rawValue)],
                        factory: factory))
                }),
                subscriptions: Meter(label: "switchboard_subscriptions", dimensions: label, factory: factory)))
        })
        connectionsGauge = Dictionary(uniqueKeysWithValues: Role.allCases.flatMap { role in
            Transport.allCases.map { transport in
                (ConnectionKey(role: role, transport: transport), Meter(
                    label: "switchboard_connections", dimensions: [("role", role.rawValue), ("transport", transport.rawValue)],
                    factory: factory))
            }
        })
        attemptCounters = Dictionary(uniqueKeysWithValues: AttemptResult.allCases.map { result in
            (result, Counter(label: "switchboard_connection_attempts_total", dimensions: [("result", result.rawValue)], factory: factory))
        })
        rateLimitedCounters = Dictionary(uniqueKeysWithValues: Limit.allCases.map { limit in
            (limit, Counter(label: "switchboard_rate_limited_total", dimensions: [("limit", limit.rawValue)], factory: factory))
        })
        bytesReceivedCounter = Counter(label: "switchboard_bytes_received_total", factory: factory)
        bytesSentCounter = Counter(label: "switchboard_bytes_sent_total", factory: factory)
        compressedBytesSentCounter = Counter(label: "switchboard_compressed_bytes_sent_total", factory: factory)
        compressedRawBytesCounter = Counter(label: "switchboard_compressed_bytes_raw_total", factory: factory)
        authFailuresCounter = Counter(label: "switchboard_auth_failures_total", factory: factory)
        slowConsumerCounter = Counter(label: "switchboard_slow_consumer_disconnects_total", factory: factory)
        latency = CoreMetrics.Timer(label: Self.latencyMetricName, factory: factory)
        for meter in connectionsGauge.values { meter.set(0) }
    }

    // MARK: Recording

    public func recordPublished(namespace: String) {
        published.add(1, ordering: .relaxed)
        namespaceMetrics[namespace]?.published.increment()
    }

    func recordDelivered(namespace: String, recipients: Int) {
        guard recipients > 0 else { return }
        delivered.add(recipients, ordering: .relaxed)
        namespaceMetrics[namespace]?.delivered.increment(by: Int64(recipients))
    }

    /// Counts `count` messages of `namespace` dropped for `reason`.
    public func recordDropped(namespace: String, reason: DropReason, count: Int = 1) {
        guard count > 0 else { return }
        dropped.add(count, ordering: .relaxed)
        namespaceMetrics[namespace]?.dropped[reason]?.increment(by: Int64(count))
    }

    public func recordSubscribed(namespace: String) {
        subscriptionsTotal.add(1, ordering: .relaxed)
        namespaceMetrics[namespace]?.subscriptions.increment()
    }

    public func recordUnsubscribed(namespace: String) {
        subscriptionsTotal.subtract(1, ordering: .relaxed)
        namespaceMetrics[namespace]?.subscriptions.decrement()
    }

    public func recordAttempt(_ result: AttemptResult) {
        attemptCounters[result]?.increment()
        if result == .accepted { upgradesAccepted.add(1, ordering: .relaxed) }
    }

    public func recordConnected(role: Role, transport: Transport = .websocket) {
        connectionsByRole[role]?.add(1)
        connectionsByTransport[transport]?.add(1)
        connectionsGauge[ConnectionKey(role: role, transport: transport)]?.increment()
        tlsConnectionsGauge?.increment()
        let total = connectionsByRole.values.reduce(0) { $0 + $1.load() }
        var peak = peakConnections.load(ordering: .relaxed)
        while total > peak {
            let (exchanged, original) = peakConnections.compareExchange(expected: peak, desired: total, ordering: .relaxed)
            if exchanged { break }
            peak = original
        }
    }

    public func recordDisconnected(role: Role, transport: Transport = .websocket) {
        connectionsByRole[role]?.subtract(1)
        connectionsByTransport[transport]?.subtract(1)
        connectionsGauge[ConnectionKey(role: role, transport: transport)]?.decrement()
        tlsConnectionsGauge?.decrement()
    }

    public func recordRoleChange(from old: Role, to new: Role, transport: Transport = .websocket) {
        guard old != new else { return }
        recordDisconnected(role: old, transport: transport)
        connectionsByRole[new]?.add(1)
        connectionsByTransport[transport]?.add(1)
        connectionsGauge[ConnectionKey(role: new, transport: transport)]?.increment()
        tlsConnectionsGauge?.increment()
    }

    public func recordBytesIn(_ count: Int) {
        bytesIn.add(count, ordering: .relaxed)
        bytesReceivedCounter.increment(by: Int64(count))
    }

    public func recordBytesOut(_ count: Int) {
        bytesOut.add(count, ordering: .relaxed)
        bytesSentCounter.increment(by: Int64(count))
    }

    /// Frames written compressed (permessage-deflate, SPEC §12): their bytes on the wire (also counted by
    /// ``recordBytesOut(_:)``) and the bytes the same frames would have taken uncompressed.
    public func recordCompressedBytesOut(_ count: Int, raw: Int) {
        compressedBytesOut.add(count, ordering: .relaxed)
        compressedFramesRawBytes.add(raw, ordering: .relaxed)
        compressedBytesSentCounter.increment(by: Int64(count))
        compressedRawBytesCounter.increment(by: Int64(raw))
    }

    public func recordAuth(succeeded: Bool) {
        if succeeded {
            authSuccesses.add(1, ordering: .relaxed)
        } else {
            authFailures.add(1, ordering: .relaxed)
            authFailuresCounter.increment()
        }
    }

    public func recordRateLimited(_ limit: Limit) {
        rateLimitedByLimit[limit]?.add(1)
        rateLimitedCounters[limit]?.increment()
    }

    public func recordSlowConsumerClose() {
        slowConsumerCloses.add(1, ordering: .relaxed)
        slowConsumerCounter.increment()
    }

    public func recordSecurityEvent(_ kind: SecurityEventKind, count: Int = 1) {
        securityEventsByKind[kind]?.add(count)
        securityEventCounters[kind]?.increment(by: Int64(count))
    }

    /// Time from a publish being accepted to its frame being written to a socket.
    public func recordDeliveryLatency(nanoseconds: Int64) {
        latency.recordNanoseconds(max(0, nanoseconds))
    }

    /// A channel's stream restarted under this node (a new epoch from the cluster replaced the one it held).
    public func recordStreamRestart() {
        streamRestarts.add(1, ordering: .relaxed)
        streamRestartCounter.increment()
    }

    /// An audit line dropped because the `--audit-log` file could not keep up.
    public func recordAuditLineDropped() {
        auditLinesDropped.add(1, ordering: .relaxed)
        auditDroppedCounter.increment()
    }

    // MARK: Recording the Redis link (cluster mode)

    public func recordRedisLink(up: Bool) {
        redisLink?.up.set(up ? 1 : 0)
    }

    public func recordRedisReconnect() {
        redisLink?.reconnects.increment()
    }

    public func recordRedisCommands(_ count: Int) {
        redisLink?.commands.increment(by: Int64(count))
    }

    /// A publish that reached only this node's subscribers because Redis was out of reach.
    public func recordNotForwarded() {
        redisLink?.notForwarded.increment()
    }

    /// Messages of a feed gap: read back from the history (`repaired`), or gone (`lost`).
    public func recordGap(repaired: Int, lost: Int) {
        if repaired > 0 { redisLink?.gapRepaired.increment(by: Int64(repaired)) }
        if lost > 0 { redisLink?.gapLost.increment(by: Int64(lost)) }
    }

    /// Takes a sample for the per-second rates; call about once a second.
    public func sample(now: ContinuousClock.Instant = .now) {
        let sample = (
            now, published.load(ordering: .relaxed), delivered.load(ordering: .relaxed), upgradesAccepted.load(ordering: .relaxed)
        )
        samples.withLock { samples in
            samples.append(sample)
            while let first = samples.first, now - first.at > Self.rateWindow { samples.removeFirst() }
        }
    }

}
