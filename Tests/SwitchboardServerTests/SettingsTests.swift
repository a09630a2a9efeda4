import Foundation
import Logging
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
        #expect(settings.heartbeat == .milliseconds(25_000))
        #expect(settings.maxMessageBytes == 65_536)
        #expect(settings.messageRate == 100 && settings.messageBurst == 20)
        #expect(settings.maxSubscriptions == 50)
        #expect(settings.channelTTL == .milliseconds(600_000))
        #expect(settings.maxHTTPConnectionsPerIP == 32)
        #expect(settings.outboundBufferBytes == 1_048_576)
        #expect(settings.namespaces.map(\.name) == ["market_data", "trading_signals", "system_status", "user", "admin"])
    }

    @Test func logLevelAndListenBacklogAreSettingsLikeAnyOther() throws {
        let defaults = try Settings.load(flags: [:], environment: [:])
        #expect(defaults.logLevel == .info)
        #expect(defaults.listenBacklog == 4096, "SPEC §10: sized for reconnect storms")
        let fromEnvironment = try Settings.load(flags: [:], environment: ["SWITCHBOARD_LOG_LEVEL": "debug", "SWITCHBOARD_LISTEN_BACKLOG": "512"])
        #expect(fromEnvironment.logLevel == .debug)
        #expect(fromEnvironment.listenBacklog == 512)
        let config = try file("l.yaml", "log-level: warning\n")
        #expect(try Settings.load(flags: ["config": config], environment: [:]).logLevel == .warning)
        #expect(try Settings.load(flags: ["log-level": "ERROR"], environment: ["SWITCHBOARD_LOG_LEVEL": "debug"]).logLevel == .error)
        #expect(throws: SettingsError.self) { try Settings.load(flags: ["log-level": "loud"], environment: [:]) }
        #expect(throws: SettingsError.self) { try Settings.load(flags: ["listen-backlog": "0"], environment: [:]) }
    }

    @Test func processorBudgetFollowsTheAffinityMaskAndTheCgroupQuota() {
        #expect(ProcessorBudget.affinityCount(status: "Name:\tx\nCpus_allowed_list:\t0-1,3\n") == 3)
        #expect(ProcessorBudget.affinityCount(status: "Cpus_allowed_list:\t0-63\n") == 64)
        // cgroup v2 `cpu.max`
        #expect(ProcessorBudget.quota(cpuMax: "max 100000\n") == nil)
        #expect(ProcessorBudget.quota(cpuMax: "200000 100000\n") == 2)
        #expect(ProcessorBudget.quota(cpuMax: "150000 100000\n") == 2, "a fraction of a CPU rounds up")
        #expect(ProcessorBudget.quota(cpuMax: "50000 100000\n") == 1)
        // cgroup v1
        #expect(ProcessorBudget.quota(cfsQuota: "-1\n", cfsPeriod: "100000\n") == nil)
        #expect(ProcessorBudget.quota(cfsQuota: "400000\n", cfsPeriod: "100000\n") == 4)
        let paths = ProcessorBudget.cgroupPaths(membership: "4:cpu,cpuacct:/docker/abc\n3:memory:/x\n0::/\n")
        #expect(paths["cpu"] == "/docker/abc" && paths["cpuacct"] == "/docker/abc" && paths[""] == "")
        #expect(ProcessorBudget.count() >= 1)
    }

    @Test func flagsBeatEnvironmentBeatFileBeatDefaults() throws {
        let config = try file("c.yaml", "port: 7001\nheartbeat-ms: 1000\nmax-subscriptions: 7\n")
        let settings = try Settings.load(
            flags: ["config": config, "port": "7003"],
            environment: ["SWITCHBOARD_PORT": "7002", "SWITCHBOARD_HEARTBEAT_MS": "2000"])
        #expect(settings.port == 7003)
        #expect(settings.heartbeat == .milliseconds(2000))
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

    /// Each setting is declared once: the one declaration drives the flag, the environment variable, the config-file
    /// key, the range check and the help line. Every declaration is tried through all three sources here.
    @Test func oneDeclarationDrivesTheFlagTheVariableTheFileKeyAndTheHelp() throws {
        let defaults = Settings()
        let help = Settings.helpText
        for declaration in Settings.declarations {
            // A value that differs from the default, in the setting's own text form.
            let value: String = switch declaration.placeholder {
            case "n": declaration.name == "port" ? "7001" : declaration.name == "threads" ? "3" : "77"
            case "ms": "1234"
            case "s": "77"
            case "true|false": declaration.text(defaults) == "true" ? "false" : "true"
            case "level": "debug"
            case "a,b": "10.0.0.1,10.0.0.2"
            default:
                declaration.name == "redis-url" ? "redis://127.0.0.1:6390"
                    : declaration.name.hasSuffix("proxy-url") ? "http://127.0.0.1:9/\(declaration.name)"
                    : "value-\(declaration.name)-0123456789abcdef0123456789"
            }
            // tls-cert and tls-key go together: each is given with the other.
            let partner: [String: String] = switch declaration.name {
            case "tls-cert": ["tls-key": "k.pem"]
            case "tls-key": ["tls-cert": "c.pem"]
            default: [:]
            }
            let fromFlag = try Settings.load(
                flags: Settings.flags(fromArguments: ["--\(declaration.name)=\(value)"]).merging(partner) { $1 }, environment: [:])
            let fromVariable = try Settings.load(
                flags: partner, environment: [declaration.environmentName: value])
            let config = try file("d.json", "{\"\(declaration.name)\": \"\(value)\"}")
            let fromFile = try Settings.load(flags: partner.merging(["config": config]) { $1 }, environment: [:])
            #expect(declaration.text(defaults) != value, "\(declaration.name): the test value is not the default")
            for settings in [fromFlag, fromVariable, fromFile] {
                #expect(declaration.text(settings) == value, "\(declaration.name)")
            }
            if declaration.name != "demo" { #expect(help.contains("--\(declaration.name) <\(declaration.placeholder)>"), "\(declaration.name)") }
        }
        #expect(help.contains("--heartbeat-ms <ms>\n        Server ping interval. Default: 25000."))
        #expect(Settings.declarations.filter { $0.name == "heartbeat-ms" }.count == 1)
    }

    @Test func durationsAreTypedAndBounded() throws {
        let settings = try Settings.load(flags: ["heartbeat-ms": "1500", "block-seconds": "60"], environment: [:])
        #expect(settings.heartbeat == .milliseconds(1_500))
        #expect(settings.blockDuration == .seconds(60))
        for (name, value) in [("heartbeat-ms", "0"), ("heartbeat-ms", "9223372036854775807"), ("request-timeout-ms", "-5")] {
            #expect(throws: SettingsError.self, "\(name)=\(value)") { try Settings.load(flags: [name: value], environment: [:]) }
        }
    }

    @Test func commandLineArgumentsAreReadByTheSameTable() throws {
        #expect(try Settings.flags(fromArguments: ["--port", "9", "--heartbeat-ms=300", "--config", "x.yaml"])
            == ["port": "9", "heartbeat-ms": "300", "config": "x.yaml"])
        #expect { try Settings.flags(fromArguments: ["--prot", "9"]) } throws: { "\($0)".contains("unknown option '--prot'") }
        #expect { try Settings.flags(fromArguments: ["--port"]) } throws: { "\($0)".contains("--port needs a value") }
        #expect { try Settings.flags(fromArguments: ["9"]) } throws: { "\($0)".contains("unexpected argument '9'") }
    }
}
