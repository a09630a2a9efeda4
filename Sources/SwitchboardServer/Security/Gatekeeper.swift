public import Logging
public import SwitchboardCore

/// SPEC §3 and §7's gate: who may connect (the block list, the connect rate, the pools), how client IPs are
/// found and keyed, and what a failed authentication or a block does (counted, audited, spread to the cluster).
/// The node holds one; connections, admission and the API ask it.
public final class Gatekeeper: Sendable {
    /// The rules it applies (SPEC §10's settings).
    public struct Configuration: Sendable {
        /// `block-after-failures` within 60 s block an IP for `block-seconds`.
        public var blockAfterFailures: Int
        public var blockDuration: Duration

        public init(blockAfterFailures: Int, blockDuration: Duration) {
            self.blockAfterFailures = blockAfterFailures
            self.blockDuration = blockDuration
        }
    }

    public let pools: ConnectionPools
    /// The pools with the cluster's leases, as each connection's reservation holds them.
    let slots: ConnectionSlots
    public let blockList: BlockList
    public let connectRateLimiter: KeyedRateLimiter
    /// Failed authentications per IP, for blocking.
    public let authFailures: AuthFailureTracker
    /// How client IPs are found and keyed (`trusted-proxies`, `ipv6-prefix-length`).
    let addresses: ClientAddresses
    /// Open HTTP connections per IP (`max-http-connections-per-ip`).
    let httpConnections: HTTPConnectionCounts
    /// Security events (SPEC §7).
    public let audit: AuditLog
    private let configuration: Configuration
    private let connections: ConnectionRegistry
    private let cluster: (any Cluster)?
    private let statistics: NodeStatistics
    private let logger: Logger

    init(
        configuration: Configuration, pools: ConnectionPools, blockList: BlockList, connectRateLimiter: KeyedRateLimiter,
        addresses: ClientAddresses, httpConnections: HTTPConnectionCounts, audit: AuditLog, connections: ConnectionRegistry,
        cluster: (any Cluster)?, statistics: NodeStatistics, logger: Logger
    ) {
        self.configuration = configuration
        self.pools = pools
        self.slots = ConnectionSlots(pools: pools, cluster: cluster)
        self.blockList = blockList
        self.connectRateLimiter = connectRateLimiter
        self.authFailures = AuthFailureTracker(threshold: configuration.blockAfterFailures)
        self.addresses = addresses
        self.httpConnections = httpConnections
        self.audit = audit
        self.connections = connections
        self.cluster = cluster
        self.statistics = statistics
        self.logger = logger
    }

    /// Counts a failed authentication from `ip` and blocks the IP, on every node, when it reaches
    /// `block-after-failures` within 60 s: this node's failures on a single node, the whole cluster's in cluster mode
    /// (SPEC §14), or this node's again while the cluster cannot be asked.
    public func authenticationFailed(ip: String, connectionId: String?, detail: String) {
        statistics.recordAuth(succeeded: false)
        audit.record(SecurityEvent(.authFailed, ip: ip, connectionId: connectionId, detail: detail))
        // Counted here in every mode: this node's count blocks at once, and alone decides during an outage.
        let reachedHere = authFailures.recordFailure(from: ip)
        if reachedHere { blockForFailures(ip) }
        guard let cluster else { return }
        // Counted in the cluster and told to the other nodes without waiting: the caller is answering a request.
        Task {
            let count = await cluster.countPerMinute(.authenticationFailure, key: ip)
            let reachedInCluster = count.map { $0 >= configuration.blockAfterFailures } ?? false
            guard reachedHere || reachedInCluster else { return }
            if !reachedHere {
                // Failures spread over the nodes: the one that counts the last blocks everywhere (once).
                guard !blockList.isBlocked(ip) else { return }
                blockForFailures(ip)
            }
            let seconds = Int(configuration.blockDuration.components.seconds)
            _ = try? await cluster.perform(.block(ip: ip, seconds: seconds, reason: failuresReason))
        }
    }

    private var failuresReason: String { "\(configuration.blockAfterFailures) failed authentications within 60 s" }

    private func blockForFailures(_ ip: String) {
        blockHere(ip, for: configuration.blockDuration, reason: failuresReason)
    }

    /// Blocks `ip` on every node (new upgrades answer 403 `IP_BLOCKED`) and closes its open connections with
    /// 1008; answers how many connections the other nodes of the cluster closed.
    @discardableResult
    public func block(_ ip: String, for duration: Duration, reason: String) async -> Int {
        blockHere(ip, for: duration, reason: reason)
        let seconds = Int(duration.components.seconds)
        return (try? await cluster?.perform(.block(ip: ip, seconds: seconds, reason: reason))) ?? 0
    }

    /// Blocks `ip` on this node only; returns how many connections it closed.
    @discardableResult
    func blockHere(_ ip: String, for duration: Duration, reason: String) -> Int {
        guard blockList.block(ip, for: duration) else {
            logger.warning("block list full: not blocked", metadata: ["sb.ip": "\(ip)", "sb.capacity": "\(blockList.capacity)"])
            return 0
        }
        audit.record(SecurityEvent(.ipBlocked, ip: ip, detail: "\(reason); for \(duration.components.seconds) s"))
        let closing = connections.all.filter { $0.ip == ip }
        for connection in closing {
            connection.disconnect(code: .policyViolation, reason: "IP address blocked")
        }
        return closing.count
    }

    /// Closes `connections` with 4000 and writes an `admin_disconnect` event for each; returns how many.
    @discardableResult
    func disconnectByAdmin(_ connections: [any ClientConnection], target: String, by admin: String, reason: String) -> Int {
        for connection in connections {
            audit.record(SecurityEvent(
                .adminDisconnect, ip: connection.ip, connectionId: connection.id, detail: "\(target) by \(admin): \(reason)"))
            connection.disconnect(code: .disconnectedByAdmin, reason: reason)
        }
        return connections.count
    }

    /// Forgets expired blocks (writing `ip_unblocked` for each); called every second.
    func expireBlocks() {
        for ip in blockList.expire() {
            audit.record(SecurityEvent(.ipUnblocked, ip: ip, detail: "block expired"))
        }
    }
}
