import NIOCore
import SwitchboardCore

/// One WebSocket on the wire, for `/ws` and Engine.IO alike (RFC 6455): the frame loop, inflating compressed
/// messages, pongs, the close handshake, and the one outbound path every byte to the client takes.
///
/// Its two kinds, ``WebSocketConnection`` (a native session) and ``EngineWebSocket`` (an Engine.IO session's
/// transport), are subclasses that say what a message, a ping, writability, a refusal, quiescing and the end mean
/// for them (the `transport…` hooks below). A subclass rather than a delegate object: a node holds tens of
/// thousands of idle WebSockets, and one object per connection, its fields inline, is what keeps each small.
///
/// **The outbound path** (``write(_:)``) writes straight to the socket (``SocketWriter``) while NIO holds none of
/// this connection's bytes, and hands NIO what the socket does not take, so bytes never overtake each other:
/// - direct writes happen only on the channel's loop and stop at `channelInactive`: NIO closes the descriptor
///   only in its `close0`, which fires `channelInactive` before the loop runs anything else, and nothing called
///   back from inside `close0` (failed write promises, `errorCaught`) writes; so a closed descriptor, or one
///   reused by another connection, is never written;
/// - NIO's writability (its write-buffer water marks, set to `outbound-buffer-bytes`) holds the drains back, and
///   the bytes NIO holds are bounded outright: past twice the high mark, whatever wrote them, the connection is
///   a slow consumer (``transportOverflowed()``);
/// - at most one pong is in NIO and one waits (the latest ping's: RFC 6455 §5.5.3), however many pings a client
///   that does not read sends (SPEC §3).
///
/// Whether the loop's channel lanes may write to the socket directly is decided here, in ``mayWriteDirectly``
/// (subclasses add only what their session holds back), and reported through ``directAccessChanged()``.
///
/// `@unchecked Sendable`: every member is confined to the channel's loop (subclasses say what they share).
public class WebSocketTransport: ChannelInboundHandler, @unchecked Sendable {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// How long a close waits for the client's answering close frame before dropping the connection.
    static let closeGrace: TimeAmount = .seconds(5)
    /// Most bytes read while the client's close frame is awaited before the connection is dropped outright.
    static let maxBytesWhileClosing: UInt32 = 65_536
    /// Most bytes read and thrown away after the input ended before the connection is dropped outright.
    static let maxDiscardedBytes: UInt32 = 1_048_576

    /// The connection's channel (thread-safe to hold; its pipeline is only touched on its loop).
    let channel: any Channel
    private(set) var context: ChannelHandlerContext?
    /// Messages and control frames from the client's bytes.
    private var inbound: WebSocketInbound
    // The small fields follow in an order that packs them (a node holds tens of thousands of these objects):
    // the flags fill the padding after `inbound`'s last byte, the 32-bit counters pair up.
    /// The channel's writability as last reported (read here instead of the channel's atomic).
    private(set) var isWritable = true { didSet { directAccessChanged() } }
    /// Our close frame is out (or the client's arrived): only the client's close frame is still read.
    private(set) var closing = false { didSet { directAccessChanged() } }
    /// The input was refused: the close frame is followed by the end of our output (see ``refuseInput``).
    private var endingOutput = false
    /// A pong is in NIO; the next waits in ``nextPong``.
    private var pongInFlight = false
    /// The transport ended (`channelInactive` or the handler's removal).
    private(set) var tornDown = false
    /// Writes straight to the socket while the channel is active; nil under TLS and from `channelInactive` on.
    private var socket: SocketWriter? { didSet { directAccessChanged() } }
    /// Writes of which the socket took only a part, and writes handed to NIO (for tests; 32 bits, wrapping).
    private var shortWrites: UInt32 = 0
    private var writesThroughNIO: UInt32 = 0
    /// Writes handed to NIO and not yet taken by the socket: direct writes wait until there are none.
    private var writesHeldByNIO: UInt32 = 0 { didSet { directAccessChanged() } }
    /// Bytes thrown away since the input ended or our close frame went out (bounded by ``maxDiscardedBytes``).
    private var discardedBytes: UInt32 = 0
    /// The bytes of the writes NIO holds (bounded: see ``transportOverflowed()``; read on the loop by tests).
    private(set) var bytesHeldByNIO = 0
    /// The latest ping's payload, waiting for the pong before it to be written.
    private var nextPong: [UInt8]?
    /// The `101` answer until the first write, which it leads; lanes wait for it.
    private var handshake: ByteBuffer? { didSet { directAccessChanged() } }

    /// - Parameters:
    ///   - socket: the connection's descriptor's writer (nil under TLS, or when the session writes from another loop).
    ///   - handshake: the `101` answer, for the first write to lead (nil when NIO's upgrader wrote it).
    init(channel: any Channel, socket: SocketWriter?, maxMessageBytes: Int, acceptsCompressedMessages: Bool, handshake: ByteBuffer? = nil) {
        self.channel = channel
        self.socket = socket
        self.handshake = handshake
        self.inbound = WebSocketInbound(maxMessageBytes: maxMessageBytes, acceptsCompressedMessages: acceptsCompressedMessages)
    }

    // MARK: What each kind says (overridden)

    /// A whole message from the client, inflated.
    func transportReceived(_ payload: ByteBuffer, isText: Bool) {}
    /// A ping from the client (it counts toward the message rate, SPEC §7); the pong is written here.
    func transportReceivedPing() {}
    /// `count` bytes were read from the client.
    func transportRead(_ count: Int) {}
    /// The input was refused with `code` (RFC 6455 §7.1.7). By default the close frame goes out at once.
    func transportRefusedInput(code: CloseCode, reason: String) { sendClose(code: code, reason: reason) }
    /// Our close frame is about to go out (``closing`` is set): what is queued may still be written.
    func transportWillClose(code: CloseCode) {}
    /// The socket can take bytes again: drain what waits.
    func transportWritable() {}
    /// Graceful shutdown (SPEC §1: close 1001).
    func transportQuiesce() {}
    /// NIO holds more than it may: the client does not read (SPEC §5, slow consumer).
    func transportOverflowed() { sendClose(code: .slowConsumer, reason: "slow consumer: outbound buffer full") }
    /// The transport ended: from here on nothing is written.
    func transportEnded() {}
    /// ``directDescriptor`` may have changed (it never writes: it may run inside NIO's close).
    func directAccessChanged() {}

    // MARK: Channel events

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        isWritable = context.channel.isWritable
        // A 101 written by NIO's upgrader is in NIO's pipeline: direct writes start once NIO reports everything
        // before this empty write written. One of our own leads the first write instead.
        if handshake == nil && socket != nil { writeThroughNIO(ByteBuffer(), flush: false) }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        tearDown()
        self.context = nil
    }

    public func channelInactive(context: ChannelHandlerContext) {
        tearDown()
        context.fireChannelInactive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        transportRead(bytes.readableBytes)
        // After a refused frame or the client's close frame, the rest of the stream is read and thrown away:
        // closing with unread bytes would make the kernel reset the connection, which can drop our close frame.
        // After the transport ended (an upgrade's early data can arrive after it), nothing is parsed for nobody.
        guard !inbound.isEnded, !tornDown else {
            discardedBytes &+= UInt32(clamping: bytes.readableBytes)
            if discardedBytes > Self.maxDiscardedBytes { context.close(promise: nil) }
            return
        }
        if closing {
            // Our close frame is out and the client's answer is awaited (RFC 6455 §7.1.1): a client that answers
            // sends a few bytes; one that goes on flooding is dropped instead of parsed for the whole close grace.
            discardedBytes &+= UInt32(clamping: bytes.readableBytes)
            guard discardedBytes <= Self.maxBytesWhileClosing else {
                context.close(promise: nil)
                return
            }
        }
        inbound.append(bytes)
        while !tornDown, let event = inbound.next() {
            handle(event, context: context)
        }
    }

    private func handle(_ event: WebSocketInbound.Event, context: ChannelHandlerContext) {
        switch event {
        case .message(let received, let isText, let compressed):
            // After our close frame, only the client's close frame matters.
            guard !closing else { return }
            var payload = received
            if compressed, let inflater {
                // SPEC §12: inflated within max-message-bytes; a message that inflates past it closes with 1009.
                let limit = inbound.maxMessageBytes
                do throws(MessageDeflater.InflateFailure) {
                    payload = try inflater.inflate(received, limit: limit)
                } catch {
                    refuseInput(code: error.closeCode, reason: error.reason(limit: limit))
                    return
                }
            }
            transportReceived(payload, isText: isText)
        case .ping(let payload):
            guard !closing else { return }
            transportReceivedPing()
            sendPong(Array(payload.readableBytesView))
        case .pong:
            break
        case .close(let reply):
            if !closing {
                closing = true
                write(WebSocketWireFrame.close(code: reply, reason: ""))
            }
            context.close(promise: nil)
        case .fail(let code, let reason):
            refuseInput(code: code, reason: reason)
        }
    }

    /// The compressor that inflates the client's compressed messages (permessage-deflate negotiated, SPEC §12).
    var inflater: MessageDeflater? { nil }

    /// Closes after input the server cannot take (RFC 6455 §7.1.7: fail the connection): nothing more the
    /// client sends is read as frames, so its close reply may sit unread behind the rest of the refused
    /// frame. The close frame is therefore followed at once by the end of our output (TCP FIN): the client
    /// sees the close code and then the end of the stream, and closes its side, which ends the connection.
    final func refuseInput(code: CloseCode, reason: String) {
        endingOutput = true
        transportRefusedInput(code: code, reason: reason)
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard !closing else { return }
        context.close(promise: nil)
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        isWritable = context.channel.isWritable
        if isWritable { transportWritable() }
        context.fireChannelWritabilityChanged()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Sent to every connection on graceful shutdown (``OpenConnections``).
        if event is ChannelShouldQuiesceEvent {
            transportQuiesce()
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    // MARK: Outbound

    /// Whether bytes may go straight to the socket now: it has a descriptor, the 101 is out, NIO holds none of
    /// this connection's bytes (so the socket is writable) and no close frame has been queued. On the loop.
    final var mayWriteDirectly: Bool {
        socket != nil && writesHeldByNIO == 0 && isWritable && !closing && handshake == nil
    }

    /// The descriptor lanes may write to directly right now, if ``mayWriteDirectly``.
    final var directDescriptor: CInt? { mayWriteDirectly ? socket?.descriptor : nil }

    /// Writes and flushes `frames` (whole frames; led by the 101 the first time): straight to the socket while
    /// NIO holds none of this connection's bytes, and whatever the socket does not take through NIO.
    /// - Returns: the write's completion when NIO holds some of it, nil when the socket took it all.
    @discardableResult
    final func write(_ frames: ByteBuffer) -> EventLoopFuture<Void>? {
        guard context != nil else { return nil }
        var bytes = frames
        if var response = handshake {
            // The first write: the 101 leads it, in the same segment.
            handshake = nil
            response.writeImmutableBuffer(frames)
            bytes = response
        }
        guard writesHeldByNIO == 0, let socket else { return writeThroughNIO(bytes) }
        return writeRemainder(of: bytes, outcome: socket.send(bytes))
    }

    /// Hands what a lane's direct write of `bytes` left to NIO (see ``writeRemainder(of:outcome:)``).
    final func finishDirectWrite(_ bytes: ByteBuffer, outcome: SocketWriter.Outcome) {
        writeRemainder(of: bytes, outcome: outcome)
    }

    /// Hands what a direct write of `bytes` left to NIO: the rest of a short write, or all of a refused one
    /// (NIO meets the same error and closes). On the loop.
    @discardableResult
    private func writeRemainder(of bytes: ByteBuffer, outcome: SocketWriter.Outcome) -> EventLoopFuture<Void>? {
        var rest = bytes
        switch outcome {
        case .complete: return nil
        case .partial(let sent):
            shortWrites &+= 1
            rest.moveReaderIndex(forwardBy: sent)
        case .failed: break
        }
        return writeThroughNIO(rest)
    }

    /// Writes `bytes` through the pipeline (and flushes, unless told not to), counted in ``writesHeldByNIO`` and
    /// ``bytesHeldByNIO`` until the socket took them.
    @discardableResult
    private func writeThroughNIO(_ bytes: ByteBuffer, flush: Bool = true) -> EventLoopFuture<Void>? {
        guard let context else { return nil }
        writesThroughNIO &+= 1
        let count = bytes.readableBytes
        writesHeldByNIO += 1
        bytesHeldByNIO += count
        let written = context.eventLoop.makePromise(of: Void.self)
        // Called back on the loop, possibly from inside NIO's close0: it must not write.
        written.futureResult.whenComplete { _ in
            self.writesHeldByNIO -= 1
            self.bytesHeldByNIO -= count
        }
        context.write(wrapOutboundOut(bytes), promise: written)
        if flush { context.flush() }
        // Only past the high mark (NIO reports it as the write is queued) can the bound be near.
        if !isWritable && !closing && bytesHeldByNIO > maxBytesHeldByNIO { transportOverflowed() }
        return written.futureResult
    }

    /// Twice the channel's high water mark (``GatewayChannel`` sets it to `outbound-buffer-bytes`): drains stop
    /// at the mark, so only writes that ignore it (control frames, Engine.IO's own packets) could pass this.
    private var maxBytesHeldByNIO: Int {
        2 * ((try? channel.syncOptions?.getOption(ChannelOptions.writeBufferWaterMark))?.high ?? 65_536)
    }

    /// Writes a pong for the latest ping: at once, or once the one in NIO is out.
    private func sendPong(_ payload: [UInt8]) {
        guard !pongInFlight else {
            nextPong = payload
            return
        }
        guard let pending = write(WebSocketWireFrame.frame(.pong, payload: ByteBuffer(bytes: payload))) else { return }
        pongInFlight = true
        pending.whenComplete { [self] result in
            pongInFlight = false
            guard case .success = result, !closing, let next = nextPong else { return }
            nextPong = nil
            sendPong(next)
        }
    }

    /// Writes a heartbeat ping (SPEC §3), unless closing.
    final func sendPing() {
        guard !closing else { return }
        write(WebSocketWireFrame.frame(.ping, payload: ByteBuffer()))
    }

    /// Sends a close frame with `code` and closes the connection (at once, or when the client answers); after
    /// refused input also ends our side of the TCP stream (see ``refuseInput``). On the loop.
    final func sendClose(code: CloseCode, reason: String) {
        channel.eventLoop.assertInEventLoop()
        guard !closing, let context else { return }
        closing = true
        transportWillClose(code: code)
        write(WebSocketWireFrame.close(code: code.rawValue, reason: reason))
        // NIO shuts the output down once the bytes it holds are written, so the FIN follows the close frame.
        if endingOutput { context.close(mode: .output, promise: nil) }
        // RFC 6455 §7.1.1: wait for the client's close frame (or the end of its stream), then drop the TCP connection.
        context.channel.close(after: Self.closeGrace)
    }

    /// Whether the connection has a descriptor for direct writes, how many writes the socket took only in part,
    /// and how many were handed to NIO. On the loop (for tests).
    final var directWrites: (enabled: Bool, shortWrites: Int, throughNIO: Int) {
        (socket != nil, Int(shortWrites), Int(writesThroughNIO))
    }

    /// The transport ended: from here on the descriptor may be closed (see ``socket``).
    private func tearDown() {
        socket = nil
        guard !tornDown else { return }
        tornDown = true
        closing = true
        transportEnded()
    }
}
