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
