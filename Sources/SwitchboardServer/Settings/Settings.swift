public import Logging
public import SwitchboardCore

/// Every setting of SPEC §10, with its documented default.
///
/// Built by ``Settings/load(flags:environment:)``: flags beat `SWITCHBOARD_*` environment variables beat
/// the config file beat these defaults.
public struct Settings: Sendable {
    public var host = "0.0.0.0"
    public var port = 8080
    /// Pending-connection queue of the listening socket, sized for reconnect storms (the kernel caps it at
    /// `net.core.somaxconn`).
    public var listenBacklog = 4096
    /// Level of the process's log (`serve` bootstraps logging with it).
    public var logLevel: Logger.Level = .info
    /// Name of this node in stats and in a cluster.
    public var nodeId = Settings.randomNodeId()
    /// HS256 secret, at least 32 bytes.
    public var jwtSecret: String?
    /// Path of a PEM public key (RS256 or ES256).
    public var jwtPublicKey: String?
    public var allowAnonymous = true
    /// Allowed `Origin` values; empty allows any.
    public var allowedOrigins: [String] = []
    /// Peers whose `X-Forwarded-For` is believed.
    public var trustedProxies: [String] = []
    /// IPv6 clients are keyed by this prefix in every per-IP rule (SPEC §7).
    public var ipv6PrefixLength = 64
    public var maxConnections = 10_000
    public var maxConnectionsPerIP = 100
    public var maxConnectionsPerUser = 10
    /// Open HTTP (non-WebSocket) connections per client IP (SPEC §13); a trusted proxy's are not capped.
    public var maxHTTPConnectionsPerIP = 32
    /// Upgrade attempts per IP per minute.
    public var connectRatePerIP = 60
    public var authTimeout: Duration = .seconds(5)
    /// Clock tolerance for a token's `exp` and `nbf` (SPEC §2).
    public var jwtLeeway: Duration = .zero
    public var heartbeat: Duration = .seconds(25)
    /// Engine.IO's pingTimeout (SPEC §9): how long a Socket.IO client has to answer a ping.
    public var socketIOPingTimeout: Duration = .seconds(20)
    public var maxMessageBytes = 65_536
    /// Inbound messages per connection per minute, and the burst.
    public var messageRate = 100
    public var messageBurst = 20
    public var maxSubscriptions = 50
    /// How long a channel's retained state (history, last value, `seq`, epoch) outlives its last publish (SPEC §4).
    public var channelTTL: Duration = .seconds(600)
    public var blockAfterFailures = 5
    public var blockDuration: Duration = .seconds(900)
    public var outboundBufferBytes = 1_048_576
    public var shutdownGrace: Duration = .seconds(10)
    /// Longest a connection may take to complete its first request or upgrade, and longest an HTTP
    /// connection may sit idle (between or inside requests). Not in SPEC §10: it closes sockets that connect
    /// and stay silent, or send half a request or half a body.
    public var requestTimeout: Duration = .seconds(10)
    /// Event-loop threads; 0 means one per CPU this process may run on (its affinity mask, so a node pinned
    /// with `taskset -c 0` runs one loop instead of several that preempt each other). Not in SPEC §10.
    public var threads = 0
    /// How long messages for a `?batch=true` connection are gathered before one write (0: no delay).
    /// Not in SPEC §10.
    public var batchWriteDelay: Duration = .milliseconds(15)
    /// Whether WebSocket sockets send each frame at once (`TCP_NODELAY`). Off, the kernel holds small frames while
    /// earlier ones are unacknowledged and sends them together (Nagle's algorithm): far less CPU per delivery,
    /// for tens of milliseconds of latency. Not in SPEC §10.
    public var tcpNoDelay = true
    /// Cluster mode (SPEC §8): `redis://[user:password@]host:port[/db]`.
    public var redisURL: String?
    /// Prefix of every Redis key and channel, so that several clusters may share one Redis.
    public var redisPrefix = "switchboard:"
    /// PEM certificate chain and private key (SPEC §12): the port then serves HTTPS and `wss://` only.
    public var tlsCert: String?
    public var tlsKey: String?
    /// permessage-deflate for clients that offer it (SPEC §12): each publication compressed once, shared.
    public var compression = false
    /// Frames with a smaller payload go uncompressed even to compressing clients (deflate gains little on them).
    public var compressionMinBytes = 256
    /// SPEC §14: the platform's backend, asked who a client without a token is (`connect-proxy-url`) and whether a
    /// user may have a channel of a `subscribe-proxy: true` namespace (`subscribe-proxy-url`), each within
    /// `proxy-timeout-ms`.
    public var connectProxyURL: String?
    public var subscribeProxyURL: String?
    public var proxyTimeout: Duration = .seconds(1)
    public var metricsToken: String?
    public var auditLog: String?
    /// Run the synthetic market-data feed (`serve --demo`).
    public var demo = false
    /// The namespace table.
    public var namespaces: [Namespace] = Namespace.defaults

    public init() {}

    /// A short random node name such as `node-3fa9c2`.
    public static func randomNodeId() -> String {
        "node-" + String(UInt32.random(in: 0...0xFF_FFFF), radix: 16)
    }

    /// The smallest HS256 secret accepted, in bytes (SPEC §10).
    public static let minimumSecretBytes = 32

    /// Checks each declared setting's range, then the combinations a single value cannot.
    public func validate() throws(SettingsError) {
        for declaration in Self.declarations { try declaration.check(self) }
        if let jwtSecret, jwtSecret.utf8.count < Self.minimumSecretBytes {
            throw SettingsError(
                "jwt-secret is \(jwtSecret.utf8.count) bytes; it must be at least \(Self.minimumSecretBytes) bytes (try: openssl rand -hex 32)")
        }
        guard (tlsCert == nil) == (tlsKey == nil) else { throw SettingsError("tls-cert and tls-key go together: give both or neither") }
    }
}

/// A setting that could not be read, with a message naming it.
public struct SettingsError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
