public import ServiceLifecycle

/// What the nodes of one cluster do together beyond publishing (SPEC §8): commands carried out on every node,
/// per-user limits across nodes, the live nodes' figures, the shared history a node reads before it answers a
/// subscribe, and the state of the link that joins them. A cluster broker conforms to it as well as to
/// ``Broker``; a single node has none.
///
/// It is a ServiceLifecycle `Service`: the node's service group runs it for the life of the server (its link to
/// the other nodes), and shuts it down after the server and the WebSocket drain.
public protocol Cluster: Sendable, Service {
    /// Connects the node's member to the cluster: commands from other nodes are performed on it, and its
    /// figures are announced. Call once, before the node serves.
    func attach(_ member: any ClusterMember)

    /// Has every other node perform `command` and answers how many connections they closed (the caller does
    /// its own part itself). Nodes that do not answer within about a second are not counted.
    /// - Throws: when the command could not be sent (the link is down): it reached no other node.
    func perform(_ command: ClusterCommand) async throws(BrokerError) -> Int

    /// Takes one of `userId`'s `limit` connection slots across the cluster for `connectionId`; false when the
    /// cluster already holds `limit`. When the cluster cannot be asked it answers true: the node's own pool
    /// still limits the user on this node.
    func acquireUserSlot(userId: String, connectionId: String, limit: Int) async -> Bool

    /// Counts one `event` from `key` (a client IP, keyed as the pools key it) across the cluster and answers how many
    /// the cluster counted over the last minute; nil when the cluster cannot be asked, and the node counts on its own
    /// (SPEC §14: per-IP limits hold across nodes, with a per-node fallback during an outage).
    func countPerMinute(_ event: ClusterRateEvent, key: String) async -> Int?
    /// Gives a slot taken by ``acquireUserSlot(userId:connectionId:limit:)`` back.
    func releaseUserSlot(userId: String, connectionId: String)

    /// Whether a subscribe to `channel` must wait for ``prepare(channel:namespace:forSubscriber:)`` first: the channel
    /// retains messages and this node has not yet loaded what the cluster holds of it.
    func needsPreparation(channel: String, namespace: Namespace) -> Bool

    /// Loads the cluster's history and last value of `channel` into this node's hub, so that a subscribe with
    /// `since` or a last value answers as on every other node. Returns when done or when it cannot be done.
    /// With `forSubscriber`, a channel with no stream in the cluster gets one now, so that its subscribers on
    /// every node learn the same epoch before its first publish; a read (the history endpoint) starts nothing.
    func prepare(channel: String, namespace: Namespace, forSubscriber: Bool) async

    /// The other live nodes' announced figures (each as its member's ``ClusterMember/figures()``), by node id.
    func peers() async -> [String: JSONValue]

    /// Whether the shared link (Redis) is up, for health and stats.
    var linkStatus: ClusterLinkStatus { get }
}

/// The node's side of ``Cluster``: what the cluster asks of it.
public protocol ClusterMember: AnyObject, Sendable {
    /// Performs a command on this node's connections; returns how many it closed.
    func perform(_ command: ClusterCommand) -> Int
    /// This node's figures, as `stats` shows them for each node.
    func figures() -> JSONValue
    /// The cluster lease of this node's connection `connectionId` was lost and the user's pool is full: close it
    /// (SPEC §8: per-user limits hold across nodes, whatever a node's pauses).
    func leaseLost(connectionId: String)
}

/// A command every node carries out (SPEC §8: within 1 s, including nodes that start after a block).
public enum ClusterCommand: Sendable, Equatable {
    case disconnectConnection(id: String, reason: String)
    case disconnectUser(id: String, reason: String)
    case disconnectIP(String, reason: String)
    /// Block an IP for `seconds` (new upgrades refused, open connections closed with 1008).
    case block(ip: String, seconds: Int, reason: String)
    /// Subscribe every connection of the user to `channel` (SPEC §14's server-side subscribe); answers how many
    /// connections it reached.
    case subscribeUser(id: String, channel: String)
    /// Remove every connection of the user from `channel`, telling the client `reason`; answers how many it reached.
    case unsubscribeUser(id: String, channel: String, reason: String)
}

/// What a cluster counts per client IP (``Cluster/countPerMinute(_:key:)``).
public enum ClusterRateEvent: String, Sendable {
    /// A `/ws` upgrade or a Socket.IO CONNECT (`connect-rate-per-ip`).
    case connectAttempt = "connect"
    /// A failed authentication (`block-after-failures`).
    case authenticationFailure = "auth-failure"
}

/// The state of a cluster's shared link.
public struct ClusterLinkStatus: Sendable, Equatable {
    /// Connected, subscribed and answering.
    public var isUp: Bool
    /// Publishes that reached only this node's subscribers because the link was down.
    public var notForwarded: Int
    /// Times the link was connected again after it was lost.
    public var reconnects: Int

    public init(isUp: Bool, notForwarded: Int = 0, reconnects: Int = 0) {
        self.isUp = isUp
        self.notForwarded = notForwarded
        self.reconnects = reconnects
    }
}
