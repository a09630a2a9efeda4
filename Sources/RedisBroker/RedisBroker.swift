public import Logging
import NIOConcurrencyHelpers
public import NIOCore
public import RedisClient
public import SwitchboardCore

/// The cluster broker (SPEC §8). Publishes are sequenced in Redis by ``PublishScript`` and every node, the
/// accepting one included, delivers them from its feed in one `seq` order per channel, each once, repairing
/// gaps from the history stream (``FeedSequencer``). `userId` and `all: true` targets are resolved by each
/// node for its own connections. As a ``Cluster`` it also carries commands to every node (``ClusterControl``),
/// keeps per-user leases (``UserLeases``), announces this node and reads the others (``NodeRegistry``), and
/// loads a channel's history for a node that has not seen it.
///
/// The link (one command connection, one pub/sub connection) is kept by a supervisor: when either connection
/// ends, or stops answering the once-a-second `PING`, both are closed and made again with jittered backoff.
/// While the link is down a publish reaches this node's subscribers only, numbered after the last `seq` the
/// node saw (counted as not forwarded); on reconnect the node raises each channel's `seq` in Redis to at least
/// its own, so `seq` never goes backwards, and repairs whatever it missed from the history streams.
public final class RedisBroker: Broker, Cluster, Sendable {
    /// Where Redis is, how this cluster's names start, and the link's timings.
    public struct Configuration: Sendable {
        public var url: RedisURL
        /// Prefix of every key and channel (`redis-prefix`).
        public var prefix: String
        /// This node's id, unique in the cluster.
        public var nodeId: String
        public var connection: RedisConnection.Configuration
        /// How often the node pings both connections, announces itself and reads the other nodes.
        public var heartbeat: Duration
        /// How long a node's announcement lives: a node that stops announcing drops out after this.
        public var registryTTL: Duration
        /// How long a per-user lease lives without a refresh (a dead node's leases end after this).
        public var leaseDuration: Duration
        /// Reconnect delays.
        public var backoff: Backoff
        /// Messages every channel keeps in Redis at least, even without history, so gaps can be repaired.
        public var repairWindow: Int
        /// How long a channel's keys (`seq`, epoch, history) live after its last publish (`channel-ttl-ms`).
        public var channelRetention: Duration

        public init(
            url: RedisURL, prefix: String = "switchboard:", nodeId: String = "node", connection: RedisConnection.Configuration = .init(),
            heartbeat: Duration = .seconds(1), registryTTL: Duration = .seconds(7), leaseDuration: Duration = .seconds(15),
            backoff: Backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5)), repairWindow: Int = 100,
            channelRetention: Duration = .seconds(600)
        ) {
            self.url = url
            self.prefix = prefix
            self.nodeId = nodeId
            self.connection = connection
            self.heartbeat = heartbeat
            self.registryTTL = registryTTL
            self.leaseDuration = leaseDuration
            self.backoff = backoff
            self.repairWindow = repairWindow
            self.channelRetention = channelRetention
        }
    }

    /// A message of the feed as the node delivers it.
    struct FeedMessage: Sendable {
        /// The message's ``MessageRecord``.
        let record: ByteBuffer
        let tag: PublishScript.Tag
        let epoch: String
    }

    /// What a feed channel carries: one Switchboard channel's messages (a `userId` target's go to the channel
    /// `user:<id>`, tagged), or the global ones.
    enum FeedTarget: Hashable, Sendable {
        case channel(String)
        case all
    }

    /// A command sent to every node, waiting for their replies.
    struct Request {
        /// Replies that end the wait early: every other live node's.
        let expected: Int
        /// A connection lives on one node only: the first reply that closed one ends the wait.
        let endsAtFirstHit: Bool
        var replies = 0
        var closed = 0
        let promise: EventLoopPromise<Int>
    }

    struct State {
        var commands: RedisConnection?
        var feed: RedisSubscription?
        var isUp = false
        var sequencers: [FeedTarget: FeedSequencer<FeedMessage>] = [:]
        /// Retaining channels whose history this node has read from Redis.
        var prepared: Set<String> = []
        weak var member: (any ClusterMember)?
        var peers: [String: JSONValue] = [:]
        var requests: [String: Request] = [:]
        /// This node's leases, by user (renewed on the heartbeat), and each user's pool limit as admission took it.
        var leases: [String: Set<String>] = [:]
        var leaseLimits: [String: Int] = [:]
        var notForwarded = 0
        /// Channels this node numbered itself since Redis went out of reach: their streams restart (a new epoch)
        /// on this node at the first local publish and in Redis on reconnect.
        var sequencedLocally: Set<FeedTarget> = []
        var reconnects = 0
        var lost: UInt64 = 0
        var upWaiters: [EventLoopPromise<Void>] = []
        /// Set by ``stop()``: the heartbeat no longer announces this node.
        var isLeaving = false
    }

    public let configuration: Configuration
    let hub: Hub
    let logger: Logger
    let recipients: any LocalRecipients
    let loop: any EventLoop
    let state = NIOLockedValueBox(State())
    let supervisor = NIOLockedValueBox<Task<Void, Never>?>(nil)
    let control: ClusterControl
    let registry: NodeRegistry
    let userLeases: UserLeases
    let rates: ClusterRate

    /// - Parameter logger: where stream restarts are told (SPEC §5: a restart is counted and logged).
    public init(
        hub: Hub, recipients: any LocalRecipients, configuration: Configuration, loop: any EventLoop,
        logger: Logger = Logger(label: "switchboard.redis")
    ) {
        self.logger = logger
        self.hub = hub
        self.recipients = recipients
        self.configuration = configuration
        self.loop = loop
        self.control = ClusterControl(prefix: configuration.prefix)
        self.registry = NodeRegistry(prefix: configuration.prefix, ttlMilliseconds: Self.milliseconds(configuration.registryTTL))
        self.userLeases = UserLeases(prefix: configuration.prefix, leaseMilliseconds: Self.milliseconds(configuration.leaseDuration))
        self.rates = ClusterRate(prefix: configuration.prefix)
    }

    var statistics: NodeStatistics { hub.statistics }

    /// Messages the feed lost and the history no longer held, summed over channels.
    public var lostMessages: UInt64 { state.withLockedValue { $0.lost } }

    static func milliseconds(_ duration: Duration) -> Int {
        Int(duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000)
    }
}
