import NIOCore
import SwitchboardCore

/// The WebSocket transport of an Engine.IO session (SPEC §9), on the node's one WebSocket transport
/// (``WebSocketTransport``). Each text frame is one Engine.IO packet, handed to the ``EngineConnection`` on its
/// loop, which may differ from this channel's: a polling session upgraded over a connection that landed on
/// another loop. Such a socket gets no descriptor, so it never writes directly; the session's calls
/// (``send(_:)``, ``close(code:reason:)``) hop to the channel's loop, in order.
///
/// `@unchecked Sendable`: handler state is confined to the channel's loop; ``send(_:)``, ``close(code:reason:)``
/// and ``isWritableForSession`` may be called on the session's loop.
final class EngineWebSocket: WebSocketTransport, @unchecked Sendable {
    private var connection: EngineConnection?
    /// This channel's loop's compressor when the client negotiated permessage-deflate (SPEC §12): it inflates
    /// the client's compressed packets; the session compresses what it sends with its own loop's.
    private let deflater: MessageDeflater?
    override var inflater: MessageDeflater? { deflater }
    /// The session runs on this channel's loop: it hears of every change of ``WebSocketTransport/directDescriptor``.
    private var reportsDirectAccess = false

    /// - Parameters:
    ///   - socket: the descriptor's writer (nil under TLS); used only if the session runs on this channel's loop.
    ///   - sessionLoop: the loop of the session this socket serves.
    ///   - deflater: non-nil when permessage-deflate was negotiated.
    init(channel: any Channel, maxMessageBytes: Int, socket: SocketWriter?, sessionLoop: any EventLoop, deflater: MessageDeflater? = nil) {
        self.deflater = deflater
        super.init(
            channel: channel, socket: sessionLoop === channel.eventLoop ? socket : nil, maxMessageBytes: maxMessageBytes,
            acceptsCompressedMessages: deflater != nil)
    }

    /// Whether the client negotiated permessage-deflate: frames to it may be compressed.
    var compresses: Bool { deflater != nil }

    /// Binds the socket to its session, on the channel's loop before any frame is read.
    func attach(to connection: EngineConnection) {
        channel.eventLoop.assertInEventLoop()
        self.connection = connection
        reportsDirectAccess = connection.eventLoop === channel.eventLoop
    }

    /// The descriptor the session's lanes may write to directly (only ever non-nil when the session shares this
    /// channel's loop), read from the session's loop.
    var directDescriptorForSession: CInt? { reportsDirectAccess ? directDescriptor : nil }

    /// Whether the socket takes bytes now, as the session sees it (from its own loop).
    var isWritableForSession: Bool { channel.eventLoop.inEventLoop ? isWritable : channel.isWritable }

    /// Writes `bytes` (whole frames) on the transport's one outbound path, from the session's loop.
    func send(_ bytes: ByteBuffer) {
        onChannelLoop { $0.write(bytes) }
    }

    /// Sends a close frame and closes (RFC 6455 §7.1.1: a client that does not answer is dropped after a grace
    /// period), from the session's loop.
    func close(code: CloseCode, reason: String) {
        onChannelLoop { $0.sendClose(code: code, reason: reason) }
    }

    private func onChannelLoop(_ body: @escaping @Sendable (EngineWebSocket) -> Void) {
        if channel.eventLoop.inEventLoop {
            body(self)
        } else {
            channel.eventLoop.execute { body(self) }
        }
    }

    // MARK: Transport events

    override func transportReceived(_ payload: ByteBuffer, isText: Bool) {
        guard isText else {
            toConnection { connection, socket in connection.webSocketReceivedBinary(from: socket) }
            return
        }
        guard String(validating: payload.readableBytesView, as: UTF8.self) != nil else {
            refuseInput(code: .unsupportedData, reason: "text frame is not valid UTF-8")
            return
        }
        toConnection { connection, socket in connection.webSocketReceived(payload, from: socket) }
    }

    override func transportReceivedPing() {
        toConnection { connection, _ in connection.controlReceived() }
    }

    override func transportRefusedInput(code: CloseCode, reason: String) {
        sendClose(code: code, reason: reason)
        toConnection { connection, socket in connection.webSocketClosed(socket) }
    }

    override func transportWritable() {
        toConnection { connection, _ in connection.drainOutbox() }
    }

    override func transportQuiesce() {
        toConnection { connection, _ in connection.end(code: .goingAway, reason: "server shutting down") }
    }

    override func transportOverflowed() {
        toConnection { connection, _ in connection.end(code: .slowConsumer, reason: "slow consumer: outbound buffer full") }
        sendClose(code: .slowConsumer, reason: "slow consumer: outbound buffer full")
    }

    override func transportEnded() {
        toConnection { connection, socket in connection.webSocketClosed(socket) }
    }

    override func directAccessChanged() {
        guard reportsDirectAccess, let connection else { return }
        connection.directAccessChanged(of: self)
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
