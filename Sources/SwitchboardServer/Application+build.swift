import Foundation
public import Hummingbird
public import HummingbirdCore
import ServiceLifecycle
public import Logging
public import NIOCore
public import NIOPosix
public import Prometheus
import RedisBroker
import SwitchboardCore

/// Builds a Switchboard node: the router, the gateway child channel and the node's services.
///
/// Used by `switchboard serve` and by the tests alike; it bootstraps nothing process-wide.
/// - Parameters:
///   - settings: validated settings.
///   - logger: the node's logger.
///   - metrics: the Prometheus registry `/metrics` renders (`main` bootstraps swift-metrics with it too).
///   - onServerRunning: called with the listening channel (tests read the bound port from it).
public func buildApplication(
    settings: Settings,
    logger: Logger,
    metrics: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
    eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
    onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
) async throws -> some ApplicationProtocol {
    let publicKeyPEM: String?
    if let path = settings.jwtPublicKey {
        do {
            publicKeyPEM = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw SettingsError("cannot read jwt-public-key file \(path): \(error.localizedDescription)")
        }
    } else {
        publicKeyPEM = nil
    }
    let tokens = try await TokenVerifier(secret: settings.jwtSecret, publicKeyPEM: publicKeyPEM)
    return buildApplication(
        node: try Node(settings: settings, tokens: tokens, logger: logger, metrics: metrics, eventLoopGroup: eventLoopGroup),
        onServerRunning: onServerRunning)
}

/// Builds the application around an existing node (tests keep a handle on the node to inspect it).
public func buildApplication(
    node: Node,
    onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
) -> some ApplicationProtocol {
    let settings = node.settings
    let router = Router()
    ManagementAPI(node: node).register(on: router)

    // Services are shut down in reverse order: the WebSocket drain goes last, after the server.
    var services: [any Service] = [WebSocketDrain(node: node), Housekeeping(node: node)]
    // The Redis link goes after everything else, so the drain's last messages can still be forwarded.
    if let broker = node.broker as? RedisBroker { services.insert(ClusterLink(broker: broker, logger: node.logger), at: 0) }
    if settings.demo { services.append(DemoFeed(node: node)) }
    if let tls = node.tls { services.append(TLSReloader(tls: tls, logger: node.logger)) }

    return Application(
        router: router,
        server: HTTPServerBuilder { responder in GatewayChannel(node: node, responder: responder) },
        configuration: ApplicationConfiguration(
            address: .hostname(settings.host, port: settings.port), serverName: "switchboard", backlog: settings.listenBacklog),
        services: services,
        onServerRunning: onServerRunning,
        eventLoopGroupProvider: .shared(node.eventLoopGroup),
        logger: node.logger
    )
}
