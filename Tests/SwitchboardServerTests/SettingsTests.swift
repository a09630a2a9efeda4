import Foundation
import SwitchboardCore
import Testing

@testable import SwitchboardServer

/// SPEC §10: flags beat environment beat file beat defaults, with clear errors.
@Suite struct SettingsTests {
    private func file(_ name: String, _ contents: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(UUID().uuidString)-\(name)").path
        try contents.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func defaultsMatchTheSpec() throws {
        let settings = try Settings.load(flags: [:], environment: [:])
        #expect(settings.host == "0.0.0.0")
        #expect(settings.port == 8080)
        #expect(settings.allowAnonymous)
        #expect(settings.maxConnections == 10_000)
        #expect(settings.maxConnectionsPerIP == 100)
        #expect(settings.maxConnectionsPerUser == 10)
        #expect(settings.connectRatePerIP == 60)
        #expect(settings.heartbeatMs == 25_000)
        #expect(settings.maxMessageBytes == 65_536)
        #expect(settings.messageRate == 100 && settings.messageBurst == 20)
        #expect(settings.maxSubscriptions == 50)
        #expect(settings.outboundBufferBytes == 1_048_576)
        #expect(settings.namespaces.map(\.name) == ["market_data", "trading_signals", "system_status", "user", "admin"])
    }

    @Test func flagsBeatEnvironmentBeatFileBeatDefaults() throws {
        let config = try file("c.yaml", "port: 7001\nheartbeat-ms: 1000\nmax-subscriptions: 7\n")
        let settings = try Settings.load(
            flags: ["config": config, "port": "7003"],
            environment: ["SWITCHBOARD_PORT": "7002", "SWITCHBOARD_HEARTBEAT_MS": "2000"])
        #expect(settings.port == 7003)
        #expect(settings.heartbeatMs == 2000)
        #expect(settings.maxSubscriptions == 7)
        #expect(settings.maxMessageBytes == 65_536)
    }

    @Test func configFileNamedByEnvironmentIsRead() throws {
        let config = try file("c.json", #"{"max-connections-per-user": 3, "allowed-origins": ["https://a", "https://b"]}"#)
        let settings = try Settings.load(flags: [:], environment: ["SWITCHBOARD_CONFIG": config])
        #expect(settings.maxConnectionsPerUser == 3)
        #expect(settings.allowedOrigins == ["https://a", "https://b"])
    }

    @Test func namespacesTableComesFromTheFile() throws {
        let config = try file("n.yaml", """
            namespaces:
              - name: quotes
                topic: required
                throttle-ms: 50
                conflate: true
                last-value: true
              - name: vip
                min-role: user
                tiers: [gold]
            """)
        let settings = try Settings.load(flags: ["config": config], environment: [:])
        #expect(settings.namespaces.map(\.name) == ["quotes", "vip"])
        #expect(settings.namespaces[0].throttleMs == 50 && settings.namespaces[0].conflate)
        #expect(settings.namespaces[1].minRole == .user && settings.namespaces[1].tiers == ["gold"])
    }

    @Test func shortSecretIsRefusedWithAClearError() {
        #expect {
            try Settings.load(flags: ["jwt-secret": "short"], environment: [:])
        } throws: { error in
            "\(error)".contains("at least 32 bytes")
        }
    }

    @Test func badNumberNamesTheSetting() {
        #expect {
            try Settings.load(flags: [:], environment: ["SWITCHBOARD_MAX_CONNECTIONS": "lots"])
        } throws: { error in
            "\(error)".contains("max-connections")
        }
    }

    @Test func unknownKeyInFileIsAnError() throws {
        let config = try file("u.json", #"{"max-conections": 5}"#)
        #expect {
            try Settings.load(flags: ["config": config], environment: [:])
        } throws: { error in
            "\(error)".contains("unknown setting 'max-conections'")
        }
    }

    @Test func booleanSettingAcceptsTrueAndFalse() throws {
        #expect(try Settings.load(flags: ["allow-anonymous": "false"], environment: [:]).allowAnonymous == false)
        #expect(throws: SettingsError.self) { try Settings.load(flags: ["allow-anonymous": "maybe"], environment: [:]) }
    }
}
