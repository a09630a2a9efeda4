import HummingbirdCore
import Logging
import NIOCore
import NIOExtras
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The node's listening socket and accept path, in place of Hummingbird's `Server`.
///
/// Hummingbird's server gives every accepted connection a Swift task of its own, started at accept and
/// waiting for the connection's first request. Most of a node's connections become WebSockets that live on in
/// their pipeline and never need one: in a reconnect storm that task (its creation, the executor's wake-ups and
/// the hop back to the event loop) cost about a fifth of the server's CPU per connection. Here a connection is
/// set up on its event loop as before (``GatewayChannel/setup(channel:logger:)``), and only one whose first
/// request turns out to be HTTP, or a refused upgrade, is handed to a task (``GatewayChannel/serve(_:logger:)``).
///
/// Graceful shutdown is NIO's quiescing: the listener closes, every connection is asked to quiesce (HTTP ends
/// after its in-flight request, a WebSocket closes with 1001), and `run` returns once the HTTP tasks are done.
struct GatewayServer: Service {
    let gateway: GatewayChannel
    let node: Node
    let host: String
    let port: Int
    let backlog: Int
    let eventLoopGroup: any EventLoopGroup
    let logger: Logger
    /// Called with the listening channel once it is bound (tests read the port from it).
    let onServerRunning: @Sendable (any Channel) async -> Void

    func run() async throws {
        let quiescing = ServerQuiescingHelper(group: eventLoopGroup)
        let (connections, arrivals) = AsyncStream.makeStream(of: GatewayChannel.HTTPConnection.self)
        let gateway = self.gateway
        let logger = self.logger
        let node = self.node
        let listener = try await ServerBootstrap(group: eventLoopGroup)
            .serverChannelOption(ChannelOptions.backlog, value: Int32(clamping: backlog))
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiescing.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelInitializer { channel in
                gateway.setup(channel: channel, logger: logger).map { value in
                    value.negotiated.whenSuccess { outcome in
                        guard case .http(let connection) = outcome else { return }
                        // A first request after the listener closed: shutdown is under way, nobody will serve it.
                        if case .terminated = arrivals.yield(connection) { channel.close(promise: nil) }
                    }
                }
            }
            .bind(host: host, port: port)
            .get()
        listener.closeFuture.whenComplete { _ in arrivals.finish() }
        // Scripts and tests read the port from this line (with `port: 0` the kernel picks it).
        logger.info("listening on \(host):\(listener.localAddress?.port ?? port)")
        await onServerRunning(listener)

        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for await connection in connections {
                    node.httpConnectionTasks.add(1, ordering: .relaxed)
                    group.addTask { await gateway.serve(connection, logger: logger) }
                }
            }
        } onGracefulShutdown: {
            quiescing.initiateShutdown(promise: nil)
        }
        // Cancelled rather than shut down: the stream ended without the listener closing.
        try? await listener.close()
    }
}
