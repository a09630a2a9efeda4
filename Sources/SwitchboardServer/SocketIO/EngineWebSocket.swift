import NIOCore
import SwitchboardCore

/// The WebSocket transport of an Engine.IO session (SPEC §9): frames in and out, the close handshake, and
/// nothing else. Each text frame is one Engine.IO packet, handed to the ``EngineConnection`` on its loop
/// (which may differ from this channel's: a polling session upgraded over another connection).
///
/// When the session runs on this channel's loop (always for a session opened on WebSocket), frames go straight
/// to the socket under the rules of ``SocketWriter``, as on a native connection: nothing of this socket held by
/// NIO, the channel writable and active; what the socket does not take goes through NIO. A session on another
/// loop (a polling session upgraded over a connection that landed elsewhere) writes through NIO only.
///
/// `@unchecked Sendable`: handler state is confined to the channel's loop; ``send(_:)``, ``close(code:reason:)``
/// and ``isWritable`` are called on the session's loop and go through the thread-safe `Channel` when that is
/// another loop.
final class EngineWebSocket: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let channel: any Channel
    private let maxMessageBytes: Int
    /// The one WebSocket frame loop (shared with `/ws`).
    private var inbound: WebSocketInbound
    private var connection: EngineConnection?
    /// A pong is being written: a later ping's pong waits here, replacing any older one (SPEC §3: at most one
    /// pong waits, however many pings a client that does not read sends).
    private var pongInFlight = false
    /// Bytes dropped since the input ended.
    private var discardedBytes = 0
    private var nextPong: ByteBuffer?
    private var closing = false { didSet { directAccessChanged() } }
    /// Direct socket writes, when the session shares this channel's loop; nil from `channelInactive` on.
    private var socket: SocketWriter? { didSet { directAccessChanged() } }
    /// Writes handed to NIO and not yet taken by the socket: direct writes wait until there are none.
    private var writesHeldByNIO = 0 { didSet { directAccessChanged() } }
    /// The channel's writability as last reported (read on the loop instead of the channel's atomic).
    private var writable = true { didSet { directAccessChanged() } }
    /// Direct writes were set up (the session is on this loop): from then on the session hears of every change
    /// of ``directDescriptor``, synchronously.
    private var reportsDirectAccess = false

    /// The descriptor's writer (nil under TLS: the bytes must be encrypted), used once attached to a session on this loop.
    private let writer: SocketWriter?
    /// This channel's loop's compressor when the client negotiated permessage-deflate (SPEC §12): it inflates
    /// the client's compressed packets; the session compresses what it sends with its own loop's.
    private let deflater: MessageDeflater?

    /// - Parameter deflater: non-nil when permessage-deflate was negotiated.
    init(channel: any Channel, maxMessageBytes: Int, socket: SocketWriter?, deflater: MessageDeflater? = nil) {
        self.writer = socket
        self.channel = channel
        self.maxMessageBytes = maxMessageBytes
        self.deflater = deflater
        self.inbound = WebSocketInbound(maxMessageBytes: maxMessageBytes, acceptsCompressedMessages: deflater != nil)
    }

    /// Whether the client negotiated permessage-deflate: frames to it may be compressed.
    var compresses: Bool { deflater != nil }

    /// Binds the socket to its session, on the channel's loop before any frame is read.
    func attach(to connection: EngineConnection) {
        channel.eventLoop.assertInEventLoop()
        self.connection = connection
        writable = channel.isWritable
        guard let writer, connection.eventLoop.inEventLoop else { return }
        reportsDirectAccess = true
        socket = writer
        // The 101 response may still sit in NIO: direct writes start once NIO reports it written.
        writeThroughNIO(ByteBuffer())
    }

    var isWritable: Bool { socket != nil ? writable : channel.isWritable }

    /// The descriptor bytes may be written to directly right now (by the session or its channels' lanes): the
    /// session shares this loop, NIO holds none of this socket's bytes, it is writable and not closing.
    var directDescriptor: CInt? {
        guard let socket, writesHeldByNIO == 0, writable, !closing else { return nil }
        return socket.descriptor
    }

    /// Tells the session that ``directDescriptor`` may have changed (only ever non-nil on the session's loop).
    private func directAccessChanged() {
        guard reportsDirectAccess, let connection else { return }
        connection.directAccessChanged(of: self)
    }

    /// Writes and flushes `bytes` (one or more whole frames), straight to the socket when the rules allow.
    func send(_ bytes: ByteBuffer) {
        guard let socket, writesHeldByNIO == 0, writable, !closing else {
            writeThroughNIO(bytes)
            return
        }
        finishDirectWrite(bytes, outcome: socket.send(bytes))
    }

    /// Hands what a direct write of `bytes` left to NIO: the rest of a short write, or all of a refused one
    /// (NIO meets the same error and closes). On the loop.
    func finishDirectWrite(_ bytes: ByteBuffer, outcome: SocketWriter.Outcome) {
        var rest = bytes
        switch outcome {
        case .complete: return
        case .partial(let sent): rest.moveReaderIndex(forwardBy: sent)
        case .failed: break
        }
        writeThroughNIO(rest)
    }

    /// Writes through the pipeline; the future completes (on the channel's loop) once the socket took the bytes.
    @discardableResult
    private func writeThroughNIO(_ bytes: ByteBuffer) -> EventLoopFuture<Void> {
        let written = channel.eventLoop.makePromise(of: Void.self)
        if socket != nil {
            writesHeldByNIO += 1
            // Called back on the loop, possibly from inside NIO's close0: it must not write.
            written.futureResult.whenComplete { _ in self.writesHeldByNIO -= 1 }
        }
        channel.writeAndFlush(bytes, promise: written)
        return written.futureResult
    }

    /// Sends a close frame and ends the TCP connection once it is written (RFC 6455 §7.1.1: a client that
    /// does not answer is dropped after a grace period).
    func close(code: CloseCode, reason: String) {
        guard channel.eventLoop.inEventLoop else {
            channel.eventLoop.execute { self.close(code: code, reason: reason) }
            return
        }
        guard !closing else { return }
        closing = true
        writeThroughNIO(WebSocketWireFrame.close(code: code.rawValue, reason: reason))
        let channel = self.channel
        channel.close(after: WebSocketConnection.closeGrace)
    }

    // MARK: Channel events

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        // Once the session ended (our close frame is out) or a frame was refused, nothing more is read as frames: an
        // Engine.IO client does not wait for a close handshake, and a flood after the end would cost a parse per
        // frame. Bytes are counted and dropped; past the bound the connection is dropped (as on `/ws`).
        guard !closing, !inbound.isEnded else {
            discardedBytes += bytes.readableBytes
            if discardedBytes > WebSocketConnection.maxDiscardedBytes { context.close(promise: nil) }
            return
        }
        inbound.append(bytes)
        while !closing, let event = inbound.next() {
            handle(event, context: context)
        }
    }

    private func handle(_ event: WebSocketInbound.Event, context: ChannelHandlerContext) {
        switch event {
        case .message(var payload, let isText, let compressed):
            guard isText else {
                toConnection { connection, socket in connection.webSocketReceivedBinary(from: socket) }
                return
            }
            if compressed, let deflater {
                do throws(MessageDeflater.InflateFailure) {
                    payload = try deflater.inflate(payload, limit: maxMessageBytes)
                } catch {
                    refuse(code: error.closeCode, reason: error.reason(limit: maxMessageBytes), context: context)
                    return
                }
            }
            guard String(validating: payload.readableBytesView, as: UTF8.self) != nil else {
                refuse(code: .unsupportedData, reason: "text frame is not valid UTF-8", context: context)
                return
            }
            let packet = payload
            toConnection { connection, socket in connection.webSocketReceived(packet, from: socket) }
        case .ping(let payload):
            toConnection { connection, _ in connection.controlReceived() }
            sendPong(payload)
        case .pong:
            break
        case .close(let reply):
            if !closing {
                closing = true
                writeThroughNIO(WebSocketWireFrame.close(code: reply, reason: ""))
            }
            context.close(promise: nil)
        case .fail(let code, let reason):
            refuse(code: code, reason: reason, context: context)
        }
    }

    /// Writes a pong, or keeps it (the latest only) until the one being written is out.
    private func sendPong(_ payload: ByteBuffer) {
        guard !pongInFlight else {
            nextPong = payload
            return
        }
        pongInFlight = true
        writeThroughNIO(WebSocketWireFrame.frame(.pong, payload: payload)).whenComplete { [self] result in
            pongInFlight = false
            guard case .success = result, let next = nextPong else { return }
            nextPong = nil
            sendPong(next)
        }
    }

    /// Fails the connection after a frame it cannot take: close frame, then the end of our output.
    private func refuse(code: CloseCode, reason: String, context: ChannelHandlerContext) {
        close(code: code, reason: reason)
        context.close(mode: .output, promise: nil)
        toConnection { connection, socket in connection.webSocketClosed(socket) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // From here on the descriptor may be closed (see SocketWriter). (Only ever set for a session on this loop.)
        if socket != nil { socket = nil }
        // Bytes read before the end (an upgrade's early data, delivered after it) are not parsed for nobody.
        closing = true
        toConnection { connection, socket in connection.webSocketClosed(socket) }
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        writable = context.channel.isWritable
        if writable { toConnection { connection, _ in connection.drainOutbox() } }
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
