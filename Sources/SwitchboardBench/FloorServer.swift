import ArgumentParser
import NIOCore
import NIOPosix
import WebSocketTestClient

/// `floor-server`: NIO's own cost of a connection, with none of Switchboard's work in it: the connect storm's
/// floor for any server on SwiftNIO's channels (`scripts/bench --storm`, target `floor`).
///
/// It listens as a node does (one event loop, the same backlog and `SO_REUSEADDR`, NIO's default child
/// options) and gives each connection one handler that waits for the end of the request head and answers a
/// fixed `101` and `welcome`, then answers every later read with a fixed `subscribed`. With `?subscribe=` in the
/// request line both frames follow the `101` at once, as a node does. Nothing is parsed, checked, admitted or
/// kept: it is not a server, only the figure that tells how much of a node's CPU per connection is NIO's.
struct FloorServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "floor-server", abstract: "NIO's floor for the connect storm: a canned 101, welcome and subscribed (loopback only).")

    @Option(help: "Port on 127.0.0.1.") var port: Int
    @Option(help: "Listen backlog (a node's default).") var backlog: Int32 = 4096

    func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let listener = try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: backlog)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(CannedUpgradeHandler()) }
            }
            .bind(host: "127.0.0.1", port: port)
            .get()
        try await listener.closeFuture.get()
    }
}

/// Answers a WebSocket upgrade and a subscribe with fixed bytes (``FloorServer``). Event-loop confined.
final class CannedUpgradeHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// The generator's fixed `Sec-WebSocket-Key` has RFC 6455's example accept value.
    static let switchingProtocols = "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
        + "sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    /// The bytes a node sends an anonymous client (SPEC §3), with a fixed connection id.
    static let welcome = #"{"type":"welcome","connectionId":"18gm7e31ffezt","role":"anonymous","userId":null,"heartbeatMs":25000}"#
    static let subscribed = #"{"type":"subscribed","channel":"bench"}"#

    static let upgraded = answer(switchingProtocols, frames: [welcome])
    static let upgradedAndSubscribed = answer(switchingProtocols, frames: [welcome, subscribed])
    static let subscribeAnswer = answer("", frames: [subscribed])

    /// `head` then each text frame, unmasked as a server's are.
    private static func answer(_ head: String, frames: [String]) -> ByteBuffer {
        var buffer = ByteBuffer(string: head)
        for frame in frames {
            var encoded = WireParser.clientFrame(opcode: 0x1, payload: frame.utf8, masked: false)
            buffer.writeBuffer(&encoded)
        }
        return buffer
    }

    /// The request head so far; nil once it was answered.
    private var head: ByteBuffer? = ByteBuffer()

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        guard var request = head else {
            context.writeAndFlush(wrapOutboundOut(Self.subscribeAnswer), promise: nil)
            return
        }
        request.writeBuffer(&bytes)
        // The generator sends its request in one write and nothing after it until the answer.
        guard request.readableBytesView.suffix(4).elementsEqual([13, 10, 13, 10]) else {
            head = request
            if request.readableBytes > 16_384 { context.close(promise: nil) }
            return
        }
        head = nil
        let line = request.readableBytesView.prefix { $0 != 13 }
        let subscribes = line.firstRange(of: Array("subscribe=".utf8)) != nil
        context.writeAndFlush(wrapOutboundOut(subscribes ? Self.upgradedAndSubscribed : Self.upgraded), promise: nil)
    }
}
