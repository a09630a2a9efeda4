public import NIOCore
import NIOConcurrencyHelpers
import NIOPosix

/// A TCP proxy on a free loopback port in front of a server, for tests: ``silenceOpenConnections()`` makes every
/// connection open so far go silent (bytes are swallowed both ways, nothing is closed), as a connection does
/// that a failover or a broken middlebox left half-dead while the server itself is up. Connections made later
/// pass through normally.
public final class SilenceableProxy: Sendable {
    public let port: Int
    private let listener: any Channel
    private let links = NIOLockedValueBox<[Link]>([])

    /// One proxied connection: both channels, and whether it went silent.
    final class Link: Sendable {
        let silent = NIOLockedValueBox(false)
        let client: any Channel
        let server: NIOLockedValueBox<(any Channel)?> = NIOLockedValueBox(nil)

        init(client: any Channel) {
            self.client = client
        }
    }

    /// Starts forwarding connections on a free port to `targetPort` on 127.0.0.1.
    public init(forwardingTo targetPort: Int, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws {
        let links = self.links
        listener = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { client in
                let link = Link(client: client)
                links.withLockedValue { $0.append(link) }
                return ClientBootstrap(group: client.eventLoop)
                    .channelInitializer { server in
                        server.pipeline.addHandler(Forwarder(link: link, to: client))
                    }
                    .connect(host: "127.0.0.1", port: targetPort)
                    .flatMap { server in
                        link.server.withLockedValue { $0 = server }
                        return client.pipeline.addHandler(Forwarder(link: link, to: server)).flatMap {
                            client.setOption(ChannelOptions.autoRead, value: true)
                        }
                    }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = listener.localAddress?.port ?? 0
    }

    /// Every connection open now stops carrying bytes, in both directions, and stays open.
    public func silenceOpenConnections() {
        for link in links.withLockedValue({ $0 }) { link.silent.withLockedValue { $0 = true } }
    }

    public func close() async {
        try? await listener.close()
        for link in links.withLockedValue({ $0 }) {
            try? await link.client.close()
            try? await link.server.withLockedValue({ $0 })?.close()
        }
    }

    /// Copies what one side reads to the other, unless the link went silent; a close on either side closes both.
    final class Forwarder: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let link: Link
        let peer: any Channel

        init(link: Link, to peer: any Channel) {
            self.link = link
            self.peer = peer
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard !link.silent.withLockedValue({ $0 }) else { return }
            peer.writeAndFlush(unwrapInboundIn(data), promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            peer.close(promise: nil)
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}
