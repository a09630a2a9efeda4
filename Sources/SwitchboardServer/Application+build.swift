import Foundation
import Hummingbird
import HummingbirdCore
public import ServiceLifecycle
import NIOHTTP1
public import Logging
public import NIOCore
public import NIOPosix
public import Prometheus
import SwitchboardCore

/// Builds a Switchboard node: the router, the gateway child channel and the node's services.
///
/// Used by `switchboard serve` and by the tests alike; it bootstraps nothing process-wide.
/// - Parameters:
///   - settings: validated settings.
///   - logger: the node's logger.
///   - metrics: the Prometheus registry `/metrics` renders (`main` bootstraps swift-metrics with it too).
///   - onServerRunning: called once the node listens, with its port (tests read it) and open connections.
public func buildApplication(
    settings: Settings,
    logger: Logger,
    metrics: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
    eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
    onServerRunning: @escaping @Sendable (RunningServer) async -> Void = { _ in }
) async throws -> some Service {
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
    let tokens = try await TokenVerifier(secret: settings.jwtSecret, publicKeyPEM: publicKeyPEM, leeway: settings.jwtLeeway)
    return buildApplication(
        node: try Node(settings: settings, tokens: tokens, logger: logger, metrics: metrics, eventLoopGroup: eventLoopGroup),
        onServerRunning: onServerRunning)
}

/// Builds the application around an existing node (tests keep a handle on the node to inspect it).
public func buildApplication(
    node: Node,
    onServerRunning: @escaping @Sendable (RunningServer) async -> Void = { _ in }
) -> some Service {
    let settings = node.settings
    let router = Router(context: APIContext.self)
    ManagementAPI(node: node).register(on: router)

    // Services are shut down in reverse order: the WebSocket drain goes last, after the server.
    var services: [any Service] = [WebSocketDrain(node: node), Housekeeping(node: node)]
    // The Redis link goes after everything else, so the drain's last messages can still be forwarded.
    if let cluster = node.cluster { services.insert(cluster, at: 0) }
    if settings.demo { services.append(DemoFeed(node: node)) }
    if let tls = node.gateway.tls { services.append(TLSReloader(tls: tls, logger: node.logger)) }
    // After the server in shutdown order (services stop in reverse): no upgrade is waiting on the backend then.
    if let backend = node.auth.backend { services.insert(backend, at: 0) }
    return SwitchboardApplication(node: node, responder: router.buildResponder(), services: services, onServerRunning: onServerRunning)
}

/// A node as one service: the gateway's listener, answering HTTP with the router, and the node's services.
///
/// In place of Hummingbird's `Application`, whose server gives every connection a task (see ``GatewayServer``);
/// what that `Application` adds to each response is done here too: the request context, a 500 for an error
/// the router did not turn into a response, and the `Date` and `Server` headers.
struct SwitchboardApplication<Responder: HTTPResponder>: Service where Responder.Context == APIContext {
    let node: Node
    let responder: Responder
    let services: [any Service]
    let onServerRunning: @Sendable (RunningServer) async -> Void

    /// A malformed request found while the response was being written: not answered a second time.
    struct ParseErrorWhileWriting: Error {}

    func run() async throws {
        let responder = self.responder
        let logger = node.logger
        let date = HTTPDate()
        let gateway = GatewayChannel(node: node) { request, writer, channel in
            let context = APIContext(source: .init(channel: channel, logger: logger))
            var response: Response
            do {
                response = try await responder.respond(to: request, context: context)
            } catch let error as HTTPParserError {
                throw error  // the connection answers it (400) and closes
            } catch {
                logger.debug("unhandled error in a route", metadata: ["sb.error": "\(error)"])
                response = Response(status: .internalServerError)
            }
            response.headers[.date] = date.now
            response.headers[.server] = "switchboard"
            do {
                try await writer.write(response: response.head, body: response.body)
            } catch is HTTPParserError {
                throw ParseErrorWhileWriting()
            }
        }
        let server = GatewayServer(
            gateway: gateway, node: node, host: node.settings.host, port: node.settings.port, backlog: node.settings.listenBacklog,
            eventLoopGroup: node.eventLoopGroup, logger: logger, onServerRunning: onServerRunning)
        // Shut down in reverse order: the server first, the WebSocket drain last.
        try await ServiceGroup(configuration: .init(services: services + [server], logger: logger)).run()
    }
}
