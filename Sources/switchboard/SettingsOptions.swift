import ArgumentParser
import Foundation
import SwitchboardServer

/// The settings of SPEC §10 as flags. Each is text here and parsed, with the environment and the config file,
/// by `Settings.load`, so all three sources share one parser and one set of error messages.
struct SettingsOptions: ParsableArguments {
    @Option(help: "Listen address (default 0.0.0.0).") var host: String?
    @Option(help: "Listen port (default 8080).") var port: String?
    @Option(help: "Name of this node in stats and in a cluster (default random).") var nodeId: String?
    @Option(help: "HS256 secret, at least 32 bytes.") var jwtSecret: String?
    @Option(help: "Path of a PEM public key (RS256 or ES256).") var jwtPublicKey: String?
    @Option(help: "Allow anonymous connections: true or false (default true).") var allowAnonymous: String?
    @Option(help: "Comma-separated allowed Origin values (default any).") var allowedOrigins: String?
    @Option(help: "Comma-separated proxy IPs whose X-Forwarded-For is believed.") var trustedProxies: String?
    @Option(name: .customLong("ipv6-prefix-length"), help: "IPv6 clients are keyed by this prefix in per-IP rules (default 64).") var ipv6PrefixLength: String?
    @Option(help: "Global connection pool (default 10000).") var maxConnections: String?
    @Option(name: .customLong("max-connections-per-ip"), help: "Per-IP connection pool (default 100).") var maxConnectionsPerIP: String?
    @Option(help: "Per-user connection pool (default 10).") var maxConnectionsPerUser: String?
    @Option(name: .customLong("max-http-connections-per-ip"), help: "Open HTTP connections per IP (default 32).") var maxHTTPConnectionsPerIP: String?
    @Option(name: .customLong("connect-rate-per-ip"), help: "Upgrade attempts per IP per minute (default 60).") var connectRatePerIP: String?
    @Option(help: "Time to authenticate when anonymous access is off, ms (default 5000).") var authTimeoutMs: String?
    @Option(help: "Clock tolerance for a token's exp and nbf, ms (default 0).") var jwtLeewayMs: String?
    @Option(help: "Server ping interval, ms (default 25000).") var heartbeatMs: String?
    @Option(help: "Largest inbound frame in bytes (default 65536).") var maxMessageBytes: String?
    @Option(name: .customLong("socketio-ping-timeout-ms"), help: "Engine.IO pingTimeout, ms (default 20000).") var socketIOPingTimeoutMs: String?
    @Option(help: "Inbound messages per connection per minute (default 100).") var messageRate: String?
    @Option(help: "Inbound message burst (default 20).") var messageBurst: String?
    @Option(help: "Channels per connection (default 50).") var maxSubscriptions: String?
    @Option(help: "Retained channel state lives this long after the channel's last publish, ms (default 600000).") var channelTtlMs: String?
    @Option(help: "Auth failures within 60 s that block an IP (default 5).") var blockAfterFailures: String?
    @Option(help: "How long an IP stays blocked, s (default 900).") var blockSeconds: String?
    @Option(help: "Per-connection outbound buffer in bytes (default 1048576).") var outboundBufferBytes: String?
    @Option(help: "Drain time on SIGTERM, ms (default 10000).") var shutdownGraceMs: String?
    @Option(help: "Time to complete a first request or upgrade, and HTTP idle time, ms (default 10000).") var requestTimeoutMs: String?
    @Option(help: "Event-loop threads; 0 = one per CPU in the affinity mask (default 0).") var threads: String?
    @Option(help: "Gathering time before a write to ?batch=true clients, ms (default 15; 0 = none).") var batchWriteDelayMs: String?
    @Option(name: .customLong("tcp-nodelay"), help: "Send WebSocket frames at once: true, or false to let the kernel gather them (default true).")
    var tcpNoDelay: String?
    @Option(help: "Pending-connection queue of the listening socket (default 4096).") var listenBacklog: String?
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical (default info).") var logLevel: String?
    @Option(help: "Redis URL for cluster mode: redis://[user:password@]host:port[/db].") var redisUrl: String?
    @Option(help: "Prefix of every Redis key and channel (default switchboard:).") var redisPrefix: String?
    @Option(help: "PEM certificate chain: the port serves HTTPS and wss:// (reloaded on SIGHUP).") var tlsCert: String?
    @Option(help: "PEM private key of tls-cert.") var tlsKey: String?
    @Option(help: "Offer permessage-deflate to clients that ask: true or false (default false).") var compression: String?
    @Option(help: "Smaller frames go uncompressed, bytes (default 256).") var compressionMinBytes: String?
    @Option(help: "Bearer token required by /metrics.") var metricsToken: String?
    @Option(help: "File that receives security events as JSON lines.") var auditLog: String?
    @Option(help: "JSON or YAML file with any of these settings and the namespaces table.") var config: String?

    /// The flags given, by setting name.
    var given: [String: String] {
        let pairs: [(String, String?)] = [
            ("host", host), ("port", port), ("node-id", nodeId), ("jwt-secret", jwtSecret), ("jwt-public-key", jwtPublicKey),
            ("allow-anonymous", allowAnonymous), ("allowed-origins", allowedOrigins), ("trusted-proxies", trustedProxies), ("ipv6-prefix-length", ipv6PrefixLength),
            ("max-connections", maxConnections), ("max-connections-per-ip", maxConnectionsPerIP),
            ("max-connections-per-user", maxConnectionsPerUser), ("max-http-connections-per-ip", maxHTTPConnectionsPerIP), ("connect-rate-per-ip", connectRatePerIP),
            ("auth-timeout-ms", authTimeoutMs), ("jwt-leeway-ms", jwtLeewayMs), ("heartbeat-ms", heartbeatMs), ("max-message-bytes", maxMessageBytes),
            ("socketio-ping-timeout-ms", socketIOPingTimeoutMs), ("message-rate", messageRate), ("message-burst", messageBurst), ("max-subscriptions", maxSubscriptions), ("channel-ttl-ms", channelTtlMs),
            ("block-after-failures", blockAfterFailures), ("block-seconds", blockSeconds),
            ("outbound-buffer-bytes", outboundBufferBytes), ("shutdown-grace-ms", shutdownGraceMs),
            ("request-timeout-ms", requestTimeoutMs), ("threads", threads), ("batch-write-delay-ms", batchWriteDelayMs),
            ("tcp-nodelay", tcpNoDelay), ("listen-backlog", listenBacklog), ("log-level", logLevel), ("redis-url", redisUrl), ("redis-prefix", redisPrefix),
            ("tls-cert", tlsCert), ("tls-key", tlsKey), ("compression", compression), ("compression-min-bytes", compressionMinBytes),
            ("metrics-token", metricsToken), ("audit-log", auditLog), ("config", config),
        ]
        return Dictionary(uniqueKeysWithValues: pairs.compactMap { name, value in value.map { (name, $0) } })
    }

    /// Settings from these flags, `SWITCHBOARD_*` variables and the config file.
    func load(extra: [String: String] = [:]) throws -> Settings {
        do {
            return try Settings.load(flags: given.merging(extra) { _, new in new }, environment: ProcessInfo.processInfo.environment)
        } catch {
            throw ValidationError(error.description)
        }
    }
}
