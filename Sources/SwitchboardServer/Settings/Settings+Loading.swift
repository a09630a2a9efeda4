import Foundation
import Logging
public import SwitchboardCore
import Yams

extension Settings {
    /// One setting's name (as in `--name`) and how to apply its text form.
    struct Key {
        let name: String
        let apply: (inout Settings, String) throws(SettingsError) -> Void

        /// `SWITCHBOARD_NAME`, upper case with `-` as `_`.
        var environmentName: String { "SWITCHBOARD_" + name.uppercased().replacingOccurrences(of: "-", with: "_") }
    }

    /// Every setting that has a text form, in SPEC §10's order.
    static var keys: [Key] {
        [
            string("host", \.host), int("port", \.port), int("listen-backlog", \.listenBacklog), string("node-id", \.nodeId),
            optionalString("jwt-secret", \.jwtSecret), optionalString("jwt-public-key", \.jwtPublicKey),
            bool("allow-anonymous", \.allowAnonymous), list("allowed-origins", \.allowedOrigins),
            list("trusted-proxies", \.trustedProxies), int("max-connections", \.maxConnections),
            int("max-connections-per-ip", \.maxConnectionsPerIP), int("max-connections-per-user", \.maxConnectionsPerUser),
            int("connect-rate-per-ip", \.connectRatePerIP), int("auth-timeout-ms", \.authTimeoutMs),
            int("jwt-leeway-ms", \.jwtLeewayMs),
            int("channel-ttl-ms", \.channelTtlMs), int("max-http-connections-per-ip", \.maxHTTPConnectionsPerIP),
            int("ipv6-prefix-length", \.ipv6PrefixLength),
            int("heartbeat-ms", \.heartbeatMs), int("max-message-bytes", \.maxMessageBytes),
            int("socketio-ping-timeout-ms", \.socketIOPingTimeoutMs),
            int("message-rate", \.messageRate), int("message-burst", \.messageBurst),
            int("max-subscriptions", \.maxSubscriptions), int("block-after-failures", \.blockAfterFailures),
            int("block-seconds", \.blockSeconds), int("outbound-buffer-bytes", \.outboundBufferBytes),
            int("shutdown-grace-ms", \.shutdownGraceMs), int("request-timeout-ms", \.requestTimeoutMs),
            int("threads", \.threads), int("batch-write-delay-ms", \.batchWriteDelayMs),
            bool("tcp-nodelay", \.tcpNoDelay), optionalString("redis-url", \.redisURL),
            optionalString("tls-cert", \.tlsCert), optionalString("tls-key", \.tlsKey),
            bool("compression", \.compression), int("compression-min-bytes", \.compressionMinBytes),
            string("redis-prefix", \.redisPrefix),
            optionalString("metrics-token", \.metricsToken), optionalString("audit-log", \.auditLog),
            bool("demo", \.demo), logLevel(),
        ]
    }

    /// Names of every setting, `config` and `namespaces` included.
    public static var settingNames: [String] { keys.map(\.name) + ["config", "namespaces"] }

    /// `SWITCHBOARD_*` variables of `environment` that name no setting (a typo, or a setting of another version):
    /// not applied, and worth telling at start rather than ignoring (an unknown config-file key is an error).
    public static func unknownEnvironmentNames(in environment: [String: String]) -> [String] {
        // `SWITCHBOARD_URL` and `SWITCHBOARD_TOKEN` are the operator commands' (`switchboard stats`, ...).
        let known = Set(keys.map(\.environmentName) + ["SWITCHBOARD_CONFIG", "SWITCHBOARD_URL", "SWITCHBOARD_TOKEN"])
        return environment.keys.filter { $0.hasPrefix("SWITCHBOARD_") && !known.contains($0) }.sorted()
    }

    /// Builds settings from flags (by setting name, as text), the environment and the config file named by
    /// `config` in either; flags beat the environment beat the file beat defaults.
    public static func load(flags: [String: String], environment: [String: String]) throws(SettingsError) -> Settings {
        var settings = Settings()
        let configPath = flags["config"] ?? environment["SWITCHBOARD_CONFIG"]
        if let configPath { try settings.applyFile(at: configPath) }
        for key in keys {
            if let value = environment[key.environmentName] { try key.apply(&settings, value) }
        }
        for key in keys {
            if let value = flags[key.name] { try key.apply(&settings, value) }
        }
        try settings.validate()
        return settings
    }

    /// Applies a JSON or YAML config file: any setting by name, plus the `namespaces` table.
    mutating func applyFile(at path: String) throws(SettingsError) {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw SettingsError("cannot read config file \(path): \(error.localizedDescription)")
        }
        // YAML 1.2 is a superset of JSON, so one parser reads both.
        let document: Any?
        do {
            document = try Yams.load(yaml: text)
        } catch {
            throw SettingsError("config file \(path) is not valid JSON or YAML: \(error)")
        }
        guard let table = document as? [String: Any] else {
            throw SettingsError("config file \(path) must hold an object of settings")
        }
        for (name, value) in table where name != "namespaces" {
            guard let key = Self.keys.first(where: { $0.name == name }) else {
                throw SettingsError("config file \(path): unknown setting '\(name)' (known: \(Self.settingNames.joined(separator: ", ")))")
            }
            try key.apply(&self, Self.text(of: value))
        }
        if table["namespaces"] != nil {
            struct NamespaceTable: Decodable { let namespaces: [Namespace] }
            do {
                namespaces = try YAMLDecoder().decode(NamespaceTable.self, from: text).namespaces
            } catch {
                throw SettingsError("config file \(path): bad namespaces table: \(error)")
            }
            guard !namespaces.isEmpty else { throw SettingsError("config file \(path): namespaces table is empty") }
        }
    }

    private static func text(of value: Any) -> String {
        switch value {
        case let list as [Any]: list.map { "\($0)" }.joined(separator: ",")
        default: "\(value)"
        }
    }

    private static func string(_ name: String, _ path: WritableKeyPath<Settings, String>) -> Key {
        Key(name: name) { settings, value in settings[keyPath: path] = value }
    }

    private static func optionalString(_ name: String, _ path: WritableKeyPath<Settings, String?>) -> Key {
        Key(name: name) { settings, value in settings[keyPath: path] = value.isEmpty ? nil : value }
    }

    private static func int(_ name: String, _ path: WritableKeyPath<Settings, Int>) -> Key {
        Key(name: name) { (settings: inout Settings, value: String) throws(SettingsError) in
            guard let number = Int(value.trimmingCharacters(in: .whitespaces)) else {
                throw SettingsError("\(name) must be a whole number, got '\(value)'")
            }
            settings[keyPath: path] = number
        }
    }

    private static func bool(_ name: String, _ path: WritableKeyPath<Settings, Bool>) -> Key {
        Key(name: name) { (settings: inout Settings, value: String) throws(SettingsError) in
            switch value.lowercased() {
            case "true", "1", "yes", "on": settings[keyPath: path] = true
            case "false", "0", "no", "off": settings[keyPath: path] = false
            default: throw SettingsError("\(name) must be true or false, got '\(value)'")
            }
        }
    }

    private static func logLevel() -> Key {
        Key(name: "log-level") { (settings: inout Settings, value: String) throws(SettingsError) in
            guard let level = Logger.Level(rawValue: value.lowercased()) else {
                throw SettingsError("log-level must be one of trace, debug, info, notice, warning, error, critical; got '\(value)'")
            }
            settings.logLevel = level
        }
    }

    private static func list(_ name: String, _ path: WritableKeyPath<Settings, [String]>) -> Key {
        Key(name: name) { settings, value in
            settings[keyPath: path] = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty }
        }
    }
}
