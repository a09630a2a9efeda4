import ArgumentParser
import Foundation
import Logging
import Metrics
import NIOPosix
import Prometheus
import ServiceLifecycle
import UnixSignals
import SwitchboardCore
import SwitchboardServer

/// `switchboard serve`: run a node.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a Switchboard node (HTTP API and WebSocket on one port).", discussion: Settings.helpText)

    @OptionGroup var options: SettingsOptions
    @Flag(help: "Also run a synthetic market-data feed and print an admin token.") var demo = false

    func run() async throws {
        var settings = try options.load(extra: demo ? ["demo": "true"] : [:])
        let level = settings.logLevel
        LoggingSystem.bootstrap { label in
            var handler = DeferredMetadataLogHandler(StreamLogHandler.standardError(label: label))
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "switchboard")
        let unknown = Settings.unknownEnvironmentNames(in: ProcessInfo.processInfo.environment)
        if !unknown.isEmpty {
            logger.warning(
                "ignored: environment variables that name no setting (see `switchboard serve --help` for the settings)",
                metadata: ["sb.variables": "\(unknown.joined(separator: ", "))"])
        }
        if settings.demo {
            if settings.jwtSecret == nil {
                settings.jwtSecret = Self.randomSecret()
                logger.notice("demo: no jwt-secret set, using a random one for this run")
            }
            let issuer = await TokenIssuer(secret: settings.jwtSecret ?? "")
            let token = try await issuer.token(userId: "demo-admin", role: .admin, ttl: .seconds(86_400))
            let trader = try await issuer.token(userId: "demo-trader", role: .user, tier: "premium", ttl: .seconds(86_400))
            // Written unbuffered so a script reading our stdout sees the token at once (SPEC §11: a line of its own).
            FileHandle.standardOutput.write(Data("demo admin token (valid 24 h):\n\(token)\n".utf8))
            FileHandle.standardOutput.write(Data(Self.demoGuide(settings: settings, admin: token, trader: trader).utf8))
        }
        // Process-wide metrics are bootstrapped here only; the node renders the same registry at /metrics.
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let threads = settings.threads > 0 ? settings.threads : ProcessorBudget.count()
        let eventLoops = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        logger.info("starting", metadata: ["sb.threads": "\(threads)", "sb.node": "\(settings.nodeId)"])
        let app = try await buildApplication(settings: settings, logger: logger, metrics: registry, eventLoopGroup: eventLoops)
        var configuration = ServiceGroupConfiguration(
            services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // SPEC §1: in-flight work gets a bounded drain time after SIGTERM.
        configuration.maximumGracefulShutdownDuration = settings.shutdownGrace
        try await ServiceGroup(configuration: configuration).run()
    }

    /// What to try with the demo, printed after the admin token: the trader's token and two commands.
    static func demoGuide(settings: Settings, admin: String, trader: String) -> String {
        let host = settings.host == "0.0.0.0" || settings.host == "::" ? "127.0.0.1" : settings.host
        let port = settings.port == 0 ? "PORT" : String(settings.port)
        return """
            dashboard: http://\(host):\(port)/ (paste the admin token above for the operations panel)
            demo premium trader token, user demo-trader (valid 24 h; receives trading_signals:* and its fills on user:demo-trader):
            \(trader)
            watch quotes, signals and fills (any WebSocket client; this one is PyPI's websockets):
              python3 -m websockets 'ws://\(host):\(port)/ws?token=\(trader)&subscribe=market_data:BTC-USD,trading_signals:momentum'
            broadcast to every connection:
              curl -s -X POST -H 'Authorization: Bearer \(admin)' -H 'Content-Type: application/json' \\
                -d '{"all":true,"event":"notice","data":{"text":"hello"}}' http://\(host):\(port)/api/v1/websocket/broadcast

            """
    }

    static func randomSecret() -> String {
        (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }
}
