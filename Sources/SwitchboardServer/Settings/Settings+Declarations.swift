import Foundation
import Logging
import RedisClient

/// One setting of SPEC §10, declared once: its name, what it does, how its text is read and which values are
/// allowed. The name is the flag (`--heartbeat-ms`), the config-file key and, upper case, the environment variable
/// (`SWITCHBOARD_HEARTBEAT_MS`); the default is the ``Settings`` property's and `serve --help` prints it.
public struct SettingDeclaration: Sendable {
    public let name: String
    public let help: String
    /// What the value looks like in `--help` (`ms`, `n`, `text`, ...).
    public let placeholder: String
    let apply: @Sendable (inout Settings, String) throws(SettingsError) -> Void
    /// The value of `settings` as text, nil when unset.
    let text: @Sendable (Settings) -> String?
    /// Throws when `settings` holds a value this setting does not allow.
    let check: @Sendable (Settings) throws(SettingsError) -> Void

    /// `SWITCHBOARD_NAME`, upper case with `-` as `_`.
    public var environmentName: String { "SWITCHBOARD_" + name.uppercased().replacingOccurrences(of: "-", with: "_") }
}

extension Settings {
    /// Every setting that has a text form, in SPEC §10's order. `config` (the file) and `namespaces` (the table, in the
    /// file only) are read by ``load(flags:environment:)`` itself.
    public static let declarations: [SettingDeclaration] = [
        .string("host", \.host, "Listen address."),
        .int("port", \.port, "Listen port (0: any free port).", allowed: 0...65535),
        .int("listen-backlog", \.listenBacklog, "Pending-connection queue of the listening socket.", allowed: 1...),
        .string("node-id", \.nodeId, "Name of this node in stats and in a cluster (default: random)."),
        .optionalString("jwt-secret", \.jwtSecret, "HS256 secret, at least 32 bytes."),
        .optionalString("jwt-public-key", \.jwtPublicKey, "Path of a PEM public key (RS256 or ES256)."),
        .bool("allow-anonymous", \.allowAnonymous, "Allow connections without a token."),
        .list("allowed-origins", \.allowedOrigins, "Comma-separated allowed Origin values (empty: any)."),
        .list("trusted-proxies", \.trustedProxies, "Comma-separated proxy IPs whose X-Forwarded-For is believed.") { proxies throws(SettingsError) in
            for proxy in proxies where ClientAddresses.parse(proxy[...]) == nil {
                throw SettingsError("trusted-proxies: '\(proxy)' is not an IP address")
            }
        },
        .int("max-connections", \.maxConnections, "Global connection pool.", allowed: 1...),
        .int("max-connections-per-ip", \.maxConnectionsPerIP, "Per-IP connection pool.", allowed: 1...),
        .int("max-connections-per-user", \.maxConnectionsPerUser, "Per-user connection pool.", allowed: 1...),
        .int("connect-rate-per-ip", \.connectRatePerIP, "Upgrade attempts per IP per minute.", allowed: 1...),
        .milliseconds("auth-timeout-ms", \.authTimeout, "Time to authenticate when anonymous access is off.", allowed: .milliseconds(1)...Self.longest),
        .milliseconds("jwt-leeway-ms", \.jwtLeeway, "Clock tolerance for a token's exp and nbf.", allowed: .zero...(.seconds(86_400))),
        .milliseconds("channel-ttl-ms", \.channelTTL, "Retained channel state lives this long after the channel's last publish.",
            allowed: .milliseconds(100)...Self.longest),
        .int("max-http-connections-per-ip", \.maxHTTPConnectionsPerIP, "Open HTTP connections per IP.", allowed: 1...),
        .int("ipv6-prefix-length", \.ipv6PrefixLength, "IPv6 clients are keyed by this prefix in per-IP rules.", allowed: 1...128),
        .milliseconds("heartbeat-ms", \.heartbeat, "Server ping interval.", allowed: .milliseconds(1)...Self.longest),
        .int("max-message-bytes", \.maxMessageBytes, "Largest inbound message in bytes.", allowed: 1...(16 * 1_048_576)),
        .milliseconds("socketio-ping-timeout-ms", \.socketIOPingTimeout, "Engine.IO pingTimeout.", allowed: .milliseconds(1)...Self.longest),
        .int("message-rate", \.messageRate, "Inbound messages per connection per minute.", allowed: 1...),
        .int("message-burst", \.messageBurst, "Inbound message burst.", allowed: 1...),
        .int("max-subscriptions", \.maxSubscriptions, "Channels per connection.", allowed: 1...),
        .int("block-after-failures", \.blockAfterFailures, "Auth failures within 60 s that block an IP.", allowed: 1...),
        .seconds("block-seconds", \.blockDuration, "How long an IP stays blocked.", allowed: .seconds(1)...(.seconds(31_536_000))),
        .int("outbound-buffer-bytes", \.outboundBufferBytes, "Per-connection outbound buffer in bytes.", allowed: 1...),
        .milliseconds("shutdown-grace-ms", \.shutdownGrace, "Drain time on SIGTERM.", allowed: .zero...Self.longest),
        .milliseconds("request-timeout-ms", \.requestTimeout, "Time to complete a first request or upgrade, and HTTP idle time.",
            allowed: .milliseconds(1)...Self.longest),
        .int("threads", \.threads, "Event-loop threads; 0 = one per CPU in the affinity mask.", allowed: 0...256),
        .milliseconds("batch-write-delay-ms", \.batchWriteDelay, "Gathering time before a write to ?batch=true clients (0: none).",
            allowed: .zero...Self.longest),
        .bool("tcp-nodelay", \.tcpNoDelay, "Send WebSocket frames at once; false lets the kernel gather them."),
        .optionalString("redis-url", \.redisURL, "Redis URL for cluster mode: redis://[user:password@]host:port[/db].") { url throws(SettingsError) in
            do {
                _ = try RedisURL(parsing: url)
            } catch {
                throw SettingsError("redis-url: \(error)")
            }
        },
        .optionalString("tls-cert", \.tlsCert, "PEM certificate chain: the port serves HTTPS and wss:// (reloaded on SIGHUP)."),
        .optionalString("tls-key", \.tlsKey, "PEM private key of tls-cert."),
        .bool("compression", \.compression, "Offer permessage-deflate to clients that ask."),
        .int("compression-min-bytes", \.compressionMinBytes, "Smaller frames go uncompressed, bytes.", allowed: 0...),
        .string("redis-prefix", \.redisPrefix, "Prefix of every Redis key and channel.") { prefix throws(SettingsError) in
            guard !prefix.isEmpty, prefix.utf8.count <= 64, !prefix.contains(where: { $0.isWhitespace || $0 == "*" }) else {
                throw SettingsError("redis-prefix must be 1 to 64 characters without spaces or '*', got '\(prefix)'")
            }
        },
        .optionalString("connect-proxy-url", \.connectProxyURL, "Platform backend asked who a client without a token is.", check: httpURL),
        .optionalString("subscribe-proxy-url", \.subscribeProxyURL, "Platform backend asked about subscribe-proxy namespaces.", check: httpURL),
        .milliseconds("proxy-timeout-ms", \.proxyTimeout, "Time the platform backend has to answer.", allowed: .milliseconds(1)...(.seconds(60))),
        .optionalString("metrics-token", \.metricsToken, "Bearer token required by /metrics."),
        .optionalString("audit-log", \.auditLog, "File that receives security events as JSON lines."),
        .bool("demo", \.demo, "Also run a synthetic market-data feed."),
        .logLevel("log-level", \.logLevel, "Log level: trace, debug, info, notice, warning, error, critical."),
    ]

    /// A proxy URL: `http://` or `https://` with a host.
    @Sendable private static func httpURL(_ text: String) throws(SettingsError) {
        guard let url = URL(string: text), ["http", "https"].contains(url.scheme?.lowercased() ?? ""), url.host?.isEmpty == false else {
            throw SettingsError("'\(text.prefix(200))' is not an http:// or https:// URL")
        }
    }

    /// The longest duration a timing setting takes (30 days): beyond it a timer's arithmetic could overflow.
    static let longest: Duration = .seconds(2_592_000)

    /// The settings as `serve --help` lists them, each with its default.
    public static var helpText: String {
        let defaults = Settings()
        // `demo` is `serve --demo`, a flag without a value (listed under OPTIONS).
        let lines = declarations.filter { $0.name != "demo" }.map { declaration in
            let value = declaration.name == "node-id" ? nil : declaration.text(defaults)
            let byDefault = value.map { " Default: \($0.isEmpty ? "none" : $0)." } ?? ""
            return "  --\(declaration.name) <\(declaration.placeholder)>\n        \(declaration.help)\(byDefault)"
        }
        return """
            SETTINGS (SPEC §10): each one is also the SWITCHBOARD_<NAME> environment variable (upper case, - as _) and a key \
            of the --config file; flags beat the environment beat the file.
              --config <path>
                    JSON or YAML file with any of these settings and the namespaces table.
            \(lines.joined(separator: "\n"))
            """
    }
}

extension SettingDeclaration {
    fileprivate static func string(
        _ name: String, _ path: any WritableKeyPath<Settings, String> & Sendable, _ help: String,
        check: @escaping @Sendable (String) throws(SettingsError) -> Void = { _ in }
    ) -> SettingDeclaration {
        SettingDeclaration(
            name: name, help: help, placeholder: "text", apply: { settings, value in settings[keyPath: path] = value },
            text: { $0[keyPath: path] }, check: { settings throws(SettingsError) in try check(settings[keyPath: path]) })
    }

    fileprivate static func optionalString(
        _ name: String, _ path: any WritableKeyPath<Settings, String?> & Sendable, _ help: String,
        check: @escaping @Sendable (String) throws(SettingsError) -> Void = { _ in }
    ) -> SettingDeclaration {
        SettingDeclaration(
            name: name, help: help, placeholder: "text", apply: { settings, value in settings[keyPath: path] = value.isEmpty ? nil : value },
            text: { $0[keyPath: path] },
            check: { settings throws(SettingsError) in if let value = settings[keyPath: path] { try check(value) } })
    }

    fileprivate static func list(
        _ name: String, _ path: any WritableKeyPath<Settings, [String]> & Sendable, _ help: String,
        check: @escaping @Sendable ([String]) throws(SettingsError) -> Void = { _ in }
    ) -> SettingDeclaration {
        SettingDeclaration(
            name: name, help: help, placeholder: "a,b",
            apply: { settings, value in
                settings[keyPath: path] = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            },
            text: { $0[keyPath: path].joined(separator: ",") }, check: { settings throws(SettingsError) in try check(settings[keyPath: path]) })
    }

    fileprivate static func bool(_ name: String, _ path: any WritableKeyPath<Settings, Bool> & Sendable, _ help: String) -> SettingDeclaration {
        SettingDeclaration(
            name: name, help: help, placeholder: "true|false",
            apply: { (settings: inout Settings, value: String) throws(SettingsError) in
                switch value.lowercased() {
                case "true", "1", "yes", "on": settings[keyPath: path] = true
                case "false", "0", "no", "off": settings[keyPath: path] = false
                default: throw SettingsError("\(name) must be true or false, got '\(value)'")
                }
            },
            text: { String($0[keyPath: path]) }, check: { _ in })
    }

    fileprivate static func int(
        _ name: String, _ path: any WritableKeyPath<Settings, Int> & Sendable, _ help: String, allowed: some RangeExpression<Int> & Sendable
    ) -> SettingDeclaration {
        SettingDeclaration(
            name: name, help: help, placeholder: "n",
            apply: { (settings: inout Settings, value: String) throws(SettingsError) in
                settings[keyPath: path] = try wholeNumber(value, name: name)
            },
            text: { String($0[keyPath: path]) },
            check: { settings throws(SettingsError) in
                let value = settings[keyPath: path]
                guard allowed.contains(value) else { throw SettingsError("\(name) must be \(describe(allowed)), got \(value)") }
            })
    }

    /// A duration given in `unit`s: `-ms` settings in milliseconds, `block-seconds` in seconds.
    fileprivate static func duration(
        _ name: String, _ path: any WritableKeyPath<Settings, Duration> & Sendable, _ help: String, unit: Duration, placeholder: String,
        allowed: some RangeExpression<Duration> & Sendable
    ) -> SettingDeclaration {
        // Whole units, saturating: a value typed as Int64.max must not trap when it is shown in an error.
        let count: @Sendable (Duration) -> Int64 = { duration in
            let ratio = duration / unit
            return ratio >= 9.2e18 ? .max : ratio <= -9.2e18 ? .min : Int64(ratio)
        }
        return SettingDeclaration(
            name: name, help: help, placeholder: placeholder,
            apply: { (settings: inout Settings, value: String) throws(SettingsError) in
                // Any Int64 of milliseconds or seconds fits a Duration (128-bit attoseconds); the range is checked later.
                settings[keyPath: path] = unit * (try wholeNumber(value, name: name))
            },
            text: { String(count($0[keyPath: path])) },
            check: { settings throws(SettingsError) in
                let value = settings[keyPath: path]
                guard allowed.contains(value) else {
                    throw SettingsError("\(name) must be \(describe(allowed, as: count)), got \(count(value))")
                }
            })
    }

    fileprivate static func milliseconds(
        _ name: String, _ path: any WritableKeyPath<Settings, Duration> & Sendable, _ help: String, allowed: some RangeExpression<Duration> & Sendable
    ) -> SettingDeclaration {
        duration(name, path, help, unit: .milliseconds(1), placeholder: "ms", allowed: allowed)
    }

    fileprivate static func seconds(
        _ name: String, _ path: any WritableKeyPath<Settings, Duration> & Sendable, _ help: String, allowed: some RangeExpression<Duration> & Sendable
    ) -> SettingDeclaration {
        duration(name, path, help, unit: .seconds(1), placeholder: "s", allowed: allowed)
    }

    fileprivate static func logLevel(_ name: String, _ path: any WritableKeyPath<Settings, Logger.Level> & Sendable, _ help: String) -> SettingDeclaration {
        SettingDeclaration(
            name: name, help: help, placeholder: "level",
            apply: { (settings: inout Settings, value: String) throws(SettingsError) in
                guard let level = Logger.Level(rawValue: value.lowercased()) else {
                    throw SettingsError("\(name) must be one of trace, debug, info, notice, warning, error, critical; got '\(value)'")
                }
                settings[keyPath: path] = level
            },
            text: { $0[keyPath: path].rawValue }, check: { _ in })
    }

    private static func wholeNumber(_ value: String, name: String) throws(SettingsError) -> Int {
        guard let number = Int(value.trimmingCharacters(in: .whitespaces)) else {
            throw SettingsError("\(name) must be a whole number, got '\(value)'")
        }
        return number
    }

    /// `greater than 0`, `0 to 256`, `at least 100`, ... for a range of whole numbers.
    private static func describe<Range: RangeExpression<Int>>(_ range: Range) -> String {
        describe(range) { Int64($0) }
    }

    private static func describe<Value: Comparable, Range: RangeExpression<Value>>(_ range: Range, as number: (Value) -> Int64) -> String {
        switch range {
        case let range as ClosedRange<Value>: "\(number(range.lowerBound)) to \(number(range.upperBound))"
        case let range as PartialRangeFrom<Value>: number(range.lowerBound) == 1 ? "greater than 0" : "at least \(number(range.lowerBound))"
        default: "in range"
        }
    }
}

extension Duration {
    /// Whole milliseconds, rounded down (saturating far beyond any setting's range).
    public var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        let limit = Int64.max / 1_000 - 1
        guard (-limit...limit).contains(seconds) else { return seconds < 0 ? .min : .max }
        return seconds * 1_000 + attoseconds / 1_000_000_000_000_000
    }
}
