import NIOCore
import SwitchboardCore

/// The WebSocket transport of an Engine.IO session (SPEC §9): frames in and out, the close handshake, and
/// nothing else. Each text frame is one Engine.IO packet, handed to the ``EngineConnection`` on its loop
/// (which may differ from this channel's: a polling session upgraded over another connection).
///
/// Unlike a native `/ws` connection it writes through NIO (no direct socket writes): Socket.IO messages are
/// built per delivery once and shared, and the WebSocket path of a polling session must keep strict order
/// with the packets it inherits.
///
/// `@unchecked Sendable`: handler state is confined to the channel's loop; ``write(_:)``, ``flush()``,
/// ``close(code:reason:)`` and ``isWritable`` go through the thread-safe `Channel`.
final class EngineWebSocket: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let channel: any Channel
    private let maxMessageBytes: Int
    private var frames: InboundFrameParser
    private var connection: EngineConnection?
    private var inputEnded = false
    private var closing = false

    init(channel: any Channel, maxMessageBytes: Int) {
        self.channel = channel
        self.maxMessageBytes = maxMessageBytes
        self.frames = InboundFrameParser(maxFrameSize: maxMessageBytes)
    }

    /// Binds the socket to its session, on the channel's loop before any frame is read.
    func attach(to connection: EngineConnection) {
        channel.eventLoop.assertInEventLoop()
        self.connection = connection
    }

    var isWritable: Bool { channel.isWritable }

    func write(_ frame: ByteBuffer) {
        channel.write(frame, promise: nil)
    }

    func flush() {
        channel.flush()
    }

    /// Sends a close frame and ends the TCP connection once it is written (RFC 6455 §7.1.1: a client that
    /// does not answer is dropped after a grace period).
    func close(code: CloseCode, reason: String) {
        channel.eventLoop.execute { [self] in
            guard !closing else { return }
            closing = true
            channel.writeAndFlush(WebSocketWireFrame.close(code: code.rawValue, reason: reason), promise: nil)
            let channel = self.channel
            channel.eventLoop.scheduleTask(in: WebSocketConnection.closeGrace) { channel.close(promise: nil) }
        }
    }

    // MARK: Channel events

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !inputEnded else { return }
        frames.append(unwrapInboundIn(data))
        do {
            while !inputEnded, let frame = try frames.next() {
                handle(frame, context: context)
            }
        } catch {
            switch error {
            case .tooLarge: refuse(code: .messageTooBig, reason: "frame larger than \(maxMessageBytes) bytes", context: context)
            case .protocolViolation(let reason): refuse(code: .protocolError, reason: reason, context: context)
            }
        }
    }

    private func handle(_ frame: InboundFrame, context: ChannelHandlerContext) {
        guard frame.isMasked, frame.fin else {
            // Engine.IO clients send whole, masked frames; anything else is refused.
            refuse(code: .protocolError, reason: frame.isMasked ? "fragmented frames are not supported here" : "client frames must be masked", context: context)
            return
        }
        switch frame.opcode {
        case InboundFrame.text:
            guard String(validating: frame.payload.readableBytesView, as: UTF8.self) != nil else {
                refuse(code: .unsupportedData, reason: "text frame is not valid UTF-8", context: context)
                return
            }
            let payload = frame.payload
            toConnection { connection, socket in connection.webSocketReceived(payload, from: socket) }
        case InboundFrame.binary:
            toConnection { connection, socket in connection.webSocketReceivedBinary(from: socket) }
        case InboundFrame.ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketWireFrame.frame(.pong, payload: frame.payload)), promise: nil)
        case InboundFrame.pong:
            break
        case InboundFrame.close:
            inputEnded = true
            if !closing {
                closing = true
                var data = frame.payload
                let code = data.readInteger(as: UInt16.self) ?? CloseCode.normal.rawValue
                context.writeAndFlush(wrapOutboundOut(WebSocketWireFrame.close(code: code, reason: "")), promise: nil)
            }
            context.close(promise: nil)
        default:
            refuse(code: .protocolError, reason: "unknown opcode", context: context)
        }
    }

    /// Fails the connection after a frame it cannot take: close frame, then the end of our output.
    private func refuse(code: CloseCode, reason: String, context: ChannelHandlerContext) {
        inputEnded = true
        frames.reset()
        close(code: code, reason: reason)
        context.close(mode: .output, promise: nil)
        toConnection { connection, socket in connection.webSocketClosed(socket) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        toConnection { connection, socket in connection.webSocketClosed(socket) }
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { toConnection { connection, _ in connection.drainOutbox() } }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            toConnection { connection, _ in connection.end(code: .goingAway, reason: "server shutting down") }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// Runs `body` on the session's loop, in the order of calls.
    private func toConnection(_ body: @escaping @Sendable (EngineConnection, EngineWebSocket) -> Void) {
        guard let connection else { return }
        if connection.eventLoop.inEventLoop {
            body(connection, self)
        } else {
            connection.eventLoop.execute { body(connection, self) }
        }
    }
}
