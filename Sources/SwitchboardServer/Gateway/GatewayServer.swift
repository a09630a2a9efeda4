import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The node's listening socket and accept path, in place of Hummingbird's `Server`.
///
/// Hummingbird's server gives every accepted connection a Swift task of its own, started at accept and
/// waiting for the connection's first request. Most of a node's connections become WebSockets that live on in
/// their pipeline and never need one: in a reconnect storm that task (its creation, the executor's wake-ups and
/// the hop back to the event loop) cost about a fifth of the server's CPU per connection. Here a connection is
/// set up on its event loop as before (``GatewayChannel/setup(channel:socket:logger:)``), and only one whose first
/// request turns out to be HTTP, or a refused upgrade, is handed to a task (``GatewayChannel/serve(_:logger:)``).
///
/// Connections are accepted by ``ListeningSocket`` and adopted by NIO one by one, so that each one's descriptor
/// is known for direct writes (``SocketWriter``); the loops take them in turn.
///
/// Graceful shutdown: the listener closes, every connection is asked to quiesce (``OpenConnections``: HTTP ends
/// after its in-flight request, a WebSocket closes with 1001), and `run` returns once the HTTP tasks are done.
/// What a started server tells its caller.
public struct RunningServer: Sendable {
    /// The bound port (the kernel's pick when asked for port 0).
    public let port: Int
    /// The connections it accepted that are still open.
    let openConnections: OpenConnections
}

struct GatewayServer: Service {
    let gateway: GatewayChannel
    let node: Node
    let host: String
    let port: Int
    let backlog: Int
    let eventLoopGroup: any EventLoopGroup
    let logger: Logger
    /// Called once the node listens (tests read the port; with `port: 0` the kernel picks it).
    let onServerRunning: @Sendable (RunningServer) async -> Void

    /// Connections accepted ahead of the loops, per loop (see ``ListeningSocket/startAccepting(maxPending:_:)``).
    static let pendingAdoptionsPerLoop = 4

    func run() async throws {
        let open = OpenConnections()
        let (connections, arrivals) = AsyncStream.makeStream(of: GatewayChannel.HTTPConnection.self)
        let gateway = self.gateway
        let logger = self.logger
        let node = self.node
        let group = self.eventLoopGroup
        let listener = try ListeningSocket(host: host, port: port, backlog: backlog)
        let loops = Array(group.makeIterator()).count
        listener.startAccepting(maxPending: Self.pendingAdoptionsPerLoop * loops) { descriptor, adopted in
            // Under TLS every byte goes through NIOSSL's handler: no direct writes (SPEC §12).
            let socket = node.gateway.tls == nil ? SocketWriter(descriptor: descriptor) : nil
            // Adopted on its loop, so that the channel is made there: allocated on the accepting thread, each
            // connection's objects went to a malloc arena of that thread's own (+13 MiB in a connect storm).
            let loop = group.next()
            loop.execute {
                ClientBootstrap(group: loop)
                    .channelInitializer { channel in
                        open.add(channel)
                        return gateway.setup(channel: channel, socket: socket, logger: logger).map { value in
                            value.negotiated.whenSuccess { outcome in
                                guard case .http(let connection) = outcome else { return }
                                // A first request after the listener closed: shutdown is under way, nobody will serve it.
                                if case .terminated = arrivals.yield(connection) { channel.close(promise: nil) }
                            }
                        }
                    }
                    .withConnectedSocket(descriptor)
                    .whenComplete { result in
                        adopted()
                        if case .failure(let error) = result {
                            logger.debug("could not adopt a connection", metadata: ["sb.error": "\(error)"])
                        }
                    }
            }
        }
        // Scripts and tests read the port from this line (with `port: 0` the kernel picks it).
        logger.info("listening on \(host):\(listener.port)")
        await onServerRunning(RunningServer(port: listener.port, openConnections: open))

        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for await connection in connections {
                    node.gateway.httpConnectionTasks.add(1, ordering: .relaxed)
                    group.addTask { await gateway.serve(connection, logger: logger) }
                }
            }
        } onGracefulShutdown: {
            listener.close()
            arrivals.finish()
            open.quiesceAll()
        }
        // Cancelled rather than shut down: the stream ended without the listener closing.
        listener.close()
    }
}
