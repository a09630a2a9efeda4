import Foundation
import Logging
import NIOCore
import SwitchboardCore

/// One upgraded WebSocket connection: frames in, the session's protocol logic, and the bounded outbound queue.
///
/// It is the only handler after the upgrade: it splits the client's bytes into frames itself
/// (``InboundFrameParser``) and writes ready-made frame bytes (server frames are never masked, RFC 6455 §5.1),
/// so a publish framed once is written as is.
/// Writes queued from any thread are drained on the event loop and flushed once per drain.
///
/// `@unchecked Sendable`: the hub calls ``deliver(_:)`` from other threads, which only touches the
/// thread-safe ``Outbox`` and hops to the event loop; every other member is confined to `eventLoop`.
public final class WebSocketConnection: ChannelInboundHandler, SessionTransport, LaneMemberConnection, @unchecked Sendable {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// The connection id given in `welcome` (made with the connection's pool slot, so the cluster lease can name it).
    public var id: String { reservation.connectionId }
    /// The client's IP address.
    public var ip: String { reservation.ip }
    var metricsTransport: NodeStatistics.Transport { .websocket }
    let node: Node
    /// The connection's channel (thread-safe to hold; its pipeline is only touched on `eventLoop`).
    let channel: any Channel
    /// The connection's event loop (not stored: an existential costs 40 bytes a connection).
    var eventLoop: any EventLoop { channel.eventLoop }
    let reservation: SlotReservation
    /// The loop's permessage-deflate compressor when the client negotiated it (SPEC §12): messages of at least
    /// `compression-min-bytes` leave as the shared compressed frames, and the client may compress its own.
    /// Read from the slot table (compressing connections sit in the compressing one): no field per connection.
    private var deflater: MessageDeflater? { loopFanout.deflater }
    private let outbox: Outbox
    /// The deliveries of the drain in progress: swapped with the outbox's queue, so draining allocates nothing.
    private var draining: [Delivery] = []
    private let drainScheduler: DrainScheduler
    /// The loop's slot table, through which channel lanes write to this connection (see ``LoopFanout``): the
    /// loop's batch-frame table for `?batch=true` connections.
    private let loopFanout: LoopFanout
    /// This connection's slot in ``loopFanout``, from `handlerAdded` to `tearDown`.
    private var fanoutMember: UInt64?
    /// Something the loop itself queued (a reply, a replay, a lane's message it could not write directly) waits
    /// in the outbox: lanes queue behind it until a drain takes it. Pushes from other threads (global and
    /// per-user messages) are no channel's lane messages and do not hold lanes back.
    private var queuedOnLoop = false { didSet { updateLaneAccess() } }
    // The flags sit together here, in the padding after `fanoutMember`'s and `queuedOnLoop`'s bytes: one field
    // apart, each took a word of its own in every connection.
    /// The channel's writability as last reported to this handler (event-loop confined): reading it here
    /// avoids a trip through the channel on every drain.
    private var isWritable = true { didSet { updateLaneAccess() } }
    private var closing = false { didSet { updateLaneAccess() } }
    /// The input was refused: the close frame is followed by the end of our output (see ``refuseInput``).
    private var endingOutput = false
    /// The transport ended (`channelInactive` or the handler's removal).
    private var tornDown = false
    /// `?batch=true`: consecutive messages leave in one `batch` frame.
    let wantsBatches: Bool
    /// The `101` answer until the first write, which it leads (``writeOut(_:context:)``); lanes wait for it.
    private var handshake: ByteBuffer? { didSet { updateLaneAccess() } }
    /// Writes straight to the socket while the channel is active (see ``SocketWriter``); nil when its
    /// descriptor was not found, and from `channelInactive` on. NIO closes the descriptor only in its `close0`,
    /// which fires `channelInactive` before the loop runs anything else, and nothing called back from inside
    /// `close0` (failed write promises, `errorCaught`) writes: so a closed descriptor, or one reused by
    /// another connection, is never written.
    private var socket: SocketWriter? { didSet { updateLaneAccess() } }
    /// Writes handed to NIO so far (for tests; 32 bits, wrapping: it fits in the padding after `socket`).
    private var writesThroughNIO: UInt32 = 0
    /// Writes handed to NIO and not yet taken by the socket: direct writes wait until there are none, so
    /// bytes never overtake each other (event-loop confined).
    private var writesHeldByNIO = 0 { didSet { updateLaneAccess() } }
    private var context: ChannelHandlerContext?
    /// The session protocol (SPEC §3), carried out by its driver.
    var session: SessionDriver<WebSocketConnection>
    private var lastActivity = NIODeadline.now()
    /// When the last heartbeat ping went out.
    private var lastPing: NIODeadline?
    /// Writes of which the socket took only a part, the rest going through NIO (for tests; 32 bits, wrapping: it
    /// fits in the padding after `lastPing`).
    private var shortWrites: UInt32 = 0
    private let heartbeats: HeartbeatTimer
    /// Messages and control frames from the client's bytes.
    private var inbound: WebSocketInbound
    /// Bytes thrown away since the input ended; past ``maxDiscardedBytes`` the connection is dropped.
    private var discardedBytes = 0
    /// Drains so far, wrapping, for sampling the latency histogram (every 16th; 32 bits fit in the padding after
    /// the fragment flags).
    private var drains: UInt32 = 0
    /// When the upgrade completed.
    let connectedAt = Date()
    /// The upgrade's `?subscribe=` channels, until `handlerAdded` subscribes them.
    private var upgradeSubscriptions: [String]
    /// Messages received from and frames written to the client (event-loop confined).
    private var messagesIn = 0
    private var messagesOut = 0

    /// - Parameter handshake: the `101` answer, for the connection to write in front of its first frame (nil
    ///   when NIO's upgrader wrote it).
    init(
        node: Node, admitted: AdmittedUpgrade, channel: any Channel, socket: SocketWriter?, compressed: Bool = false,
        handshake: ByteBuffer? = nil
    ) {
        self.handshake = handshake
        self.socket = socket
        self.node = node
        self.channel = channel
        self.reservation = admitted.reservation
        self.wantsBatches = admitted.wantsBatches
        self.upgradeSubscriptions = admitted.subscriptions
        self.outbox = Outbox(limit: node.settings.outboundBufferBytes)
        self.drainScheduler = node.drainSchedulers[channel.eventLoop]
        self.heartbeats = node.heartbeats[channel.eventLoop]
        let loop = channel.eventLoop
        let loopFanout = node.fanouts[loop][LaneFormat(batches: admitted.wantsBatches, compressed: compressed)]
        self.loopFanout = loopFanout
        self.session = SessionDriver(identity: admitted.identity, rules: node.sessionRules)
        self.inbound = WebSocketInbound(maxMessageBytes: node.settings.maxMessageBytes, acceptsCompressedMessages: loopFanout.deflater != nil)
    }

    // MARK: Channel events

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        isWritable = context.channel.isWritable
        fanoutMember = loopFanout.register(self)
        // A 101 of our own leads the first write (`welcome`'s, below), direct or through NIO. One written by NIO's
        // upgrader (the HTTP path) is in NIO's pipeline: direct writes start once NIO reports everything before
        // this empty write written.
        if handshake == nil && socket != nil { writeThroughNIO(ByteBuffer(), context: context, flush: false) }
        send(ServerMessage.welcome(connectionId: id, identity: session.identity, heartbeatMs: node.settings.heartbeatMs))
        SessionDriver.open(self)
        heartbeats.add(self)
        if !upgradeSubscriptions.isEmpty {
            handleSession(.subscribeAtUpgrade(upgradeSubscriptions))
            upgradeSubscriptions = []
        }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        tearDown()
        context.fireChannelInactive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        tearDown()
        self.context = nil
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        lastActivity = .now()
        node.statistics.recordBytesIn(bytes.readableBytes)
        // After a refused frame or the client's close frame, the rest of the stream is read and thrown away:
        // closing with unread bytes would make the kernel reset the connection, which can drop our close frame.
        // After the transport ended (an upgrade's early data can arrive after it), nothing is parsed for nobody.
        guard !inbound.isEnded, !tornDown else {
            discardedBytes += bytes.readableBytes
            if discardedBytes > Self.maxDiscardedBytes { context.close(promise: nil) }
            return
        }
        if closing {
            // Our close frame is out and the client's answer is awaited (RFC 6455 §7.1.1): a client that answers
            // sends a few bytes; one that goes on flooding is dropped instead of parsed for the whole close grace.
            discardedBytes += bytes.readableBytes
            guard discardedBytes <= Self.maxBytesWhileClosing else {
                context.close(promise: nil)
                return
            }
        }
        inbound.append(bytes)
        while let event = inbound.next() {
            handle(event, context: context)
        }
    }

    /// Most bytes read while the client's close frame is awaited before the connection is dropped outright.
    static let maxBytesWhileClosing = 65_536

    /// Most bytes read and thrown away after the input ended before the connection is dropped outright.
    static let maxDiscardedBytes = 1_048_576

    private func handle(_ event: WebSocketInbound.Event, context: ChannelHandlerContext) {
        switch event {
        case .message(let payload, let isText, let compressed):
            receive(payload, isText: isText, compressed: compressed)
        case .ping(let payload):
            // Every client frame counts toward the message rate (SPEC §7), and one pong at most waits (SPEC §3).
            handleSession(.controlReceived)
            push(.pong(payload))
        case .pong:
            break
        case .close(let reply):
            if !closing {
                closing = true
                writeImmediately(WebSocketWireFrame.close(code: reply, reason: ""))
            }
            context.close(promise: nil)
        case .fail(let code, let reason):
            refuseInput(code: code, reason: reason)
        }
    }

    /// Closes after a frame the server cannot take (RFC 6455 §7.1.7: fail the connection): nothing more the
    /// client sends is read as frames, so its close reply may sit unread behind the rest of the refused
    /// frame. The close frame is therefore followed at once by the end of our output (TCP FIN): the client
    /// sees the close code and then the end of the stream, and closes its side, which ends the connection.
    private func refuseInput(code: CloseCode, reason: String) {
        endingOutput = true
        handleSession(.closeRequested(code, reason: reason))
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard !closing else { return }
        node.logger.debug("connection error", metadata: ["sb.conn.id": "\(id)", "sb.error": "\(error)"])
        context.close(promise: nil)
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        isWritable = context.channel.isWritable
        if isWritable { drainOutbox() }
        context.fireChannelWritabilityChanged()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Hummingbird's server quiesces every child channel on graceful shutdown (SPEC §1: close 1001).
        if event is ChannelShouldQuiesceEvent {
            handleSession(.closeRequested(.goingAway, reason: "server shutting down"))
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    // MARK: Inbound messages

    private func receive(_ received: ByteBuffer, isText: Bool, compressed: Bool) {
        let payload: ByteBuffer
        if compressed, let deflater {
            // SPEC §12: inflated within max-message-bytes; a message that inflates past it closes with 1009.
            do throws(MessageDeflater.InflateFailure) {
                payload = try deflater.inflate(received, limit: node.settings.maxMessageBytes)
            } catch {
                refuseInput(code: error.closeCode, reason: error.reason(limit: node.settings.maxMessageBytes))
                return
            }
        } else {
            payload = received
        }
        messagesIn += 1
        let request: Result<ClientRequest, ClientRequestError>
        if !isText {
            request = .failure(ClientRequestError(id: nil, message: "binary frames are not supported: send JSON text frames"))
        } else if String(validating: payload.readableBytesView, as: UTF8.self) == nil {
            request = .failure(ClientRequestError(id: nil, message: "text frame is not valid UTF-8"))
        } else {
            request = Result { () throws(ClientRequestError) in try ClientRequest.decode(payload.readableBytesView) }
        }
        handleSession(.received(request))
    }

    // MARK: Session transport

    func encode(_ reply: SessionReply, id: RequestID?) -> Delivery {
        ServerMessage.encode(reply, id: id)
    }

    func endTransport(code: CloseCode, reason: String) {
        close(code: code, reason: reason)
    }

    /// The session gave back its slot, subscriptions and registration (at the start of a close, or when the
    /// transport ended): lanes and heartbeats stop reaching the connection.
    func sessionEnded() {
        heartbeats.remove(self)
        if let fanoutMember { loopFanout.release(fanoutMember) }
        fanoutMember = nil
    }

    // MARK: Outbound

    /// Queues a delivery from the hub (any thread).
    public func deliver(_ delivery: Delivery) {
        send(delivery)
    }

    /// Channel messages reach connections through their loop's lanes (batch lanes for `?batch=true`).
    public var fanout: FanoutMembership? {
        fanoutMember.map { FanoutMembership(group: loopFanout, member: $0) }
    }

    /// Queues a reply or delivery (any thread).
    func send(_ delivery: Delivery) {
        let result = outbox.push(delivery)
        // `fanoutMember` is read on the loop only.
        if result != .closed && eventLoop.inEventLoop && fanoutMember != nil { queuedOnLoop = true }
        result.apply(statistics: node.statistics) {
            // Replies go out at once even to batch clients; only channel messages wait for the batch delay.
            drainScheduler.markDirty(self, batched: wantsBatches && delivery.isMessage)
        } overflow: {
            self.eventLoop.execute { self.handleSession(.closeRequested(.slowConsumer, reason: "slow consumer: outbound buffer full")) }
        }
    }

    /// Queues a control frame in the outbox's slot for it (on the loop).
    private func push(_ control: Outbox.ControlFrame) {
        outbox.push(control).apply(statistics: node.statistics) { drainScheduler.markDirty(self) } overflow: {}
    }

    /// How long a close waits for the client's answering close frame before dropping the connection.
    static let closeGrace: TimeAmount = .seconds(5)

    /// Writes what the outbox holds if the socket is writable, then flushes once. On the event loop.
    ///
    /// Everything queued is written in one go: the outbox bounds it (outbound-buffer-bytes), so the socket's
    /// pending writes overshoot the high mark by at most that much. While the socket is not writable the
    /// queue stays in the outbox, which keeps its drain flag set; the writability change drains it.
    func drainOutbox() {
        guard isWritable, let context else { return }
        let control = outbox.takeAll(into: &draining)
        if let pong = control.pong { writeControl(.pong, payload: ByteBuffer(bytes: pong)) }
        if control.ping { writeControl(.ping, payload: ByteBuffer()) }
        queuedOnLoop = false
        guard let first = draining.first else { return }
        let oldestPublish = first.isMessage ? first.publishedAt : nil
        messagesOut += draining.count
        let written: Int
        var compressed = CompressedBytes()
        if draining.count == 1 && !wantsBatches {
            // The common case at light load: one frame, one write.
            let frame = outboundFrame(of: first, counting: &compressed)
            written = frame.readableBytes
            writeOut(frame, context: context)
        } else {
            // One write for everything drained: frames queued within one event-loop tick leave together.
            var frames = drainScheduler.takeGatherBuffer()
            gather(draining, into: &frames, counting: &compressed)
            written = frames.bytes
            writeOut(frames.output, context: context)
            drainScheduler.returnGatherBuffer(frames)
        }
        draining.removeAll(keepingCapacity: true)
        node.statistics.recordBytesOut(written)
        compressed.record(in: node.statistics)
        // The latency histogram takes a lock: sample one drain in 16, for its oldest message (the drain's worst case).
        drains &+= 1
        if drains & 15 == 0, let oldestPublish {
            node.statistics.recordDeliveryLatency(nanoseconds: Int64(NIODeadline.now().uptimeNanoseconds &- oldestPublish))
        }
    }

    /// The frame this connection gets for `delivery`: the shared compressed one if it negotiated
    /// permessage-deflate and the message is big enough, the plain one otherwise.
    private func outboundFrame(of delivery: Delivery, counting compressed: inout CompressedBytes) -> ByteBuffer {
        LaneFormat.Codec.native.frame(of: delivery, deflater: deflater, counting: &compressed)
    }

    /// Puts `deliveries`' frames into `frames`.
    private func gather(_ deliveries: [Delivery], into frames: inout GatherBuffer, counting compressed: inout CompressedBytes) {
        guard wantsBatches else {
            for delivery in deliveries { frames.append(outboundFrame(of: delivery, counting: &compressed)) }
            return
        }
        // Consecutive messages share one batch frame; replies and lone messages go as they are.
        var start = deliveries.startIndex
        while start < deliveries.endIndex {
            var end = start
            while end < deliveries.endIndex && deliveries[end].isMessage { end += 1 }
            switch end - start {
            case 0:
                frames.append(outboundFrame(of: deliveries[start], counting: &compressed))
                end = start + 1
            case 1:
                frames.append(outboundFrame(of: deliveries[start], counting: &compressed))
            default:
                // A batch frame is this connection's own (made per drain): compressed for it alone.
                let batch = drainScheduler.batchFrame(of: deliveries[start..<end])
                frames.append(deflater?.compressedFrame(ofFrame: batch, counting: &compressed) ?? batch)
            }
            start = end
        }
    }

    /// Writes and flushes `frames` (led by the 101 the first time): straight to the socket while NIO holds none
    /// of this connection's bytes, and whatever the socket does not take through NIO (which then applies
    /// writability and back-pressure).
    private func writeOut(_ frames: ByteBuffer, context: ChannelHandlerContext) {
        var bytes = frames
        if var response = handshake {
            // The first write: the 101 leads it, in the same segment.
            handshake = nil
            response.writeImmutableBuffer(frames)
            bytes = response
        }
        guard writesHeldByNIO == 0, let socket else {
            writeThroughNIO(bytes, context: context)
            return
        }
        finishDirectWrite(bytes, outcome: socket.send(bytes))
    }

    /// Hands what a direct write of `bytes` left to NIO: the rest of a short write, or all of a refused one
    /// (NIO meets the same error and closes). On the loop.
    func finishDirectWrite(_ bytes: ByteBuffer, outcome: SocketWriter.Outcome) {
        guard let context else { return }
        var rest = bytes
        switch outcome {
        case .complete: return
        case .partial(let sent):
            shortWrites &+= 1
            rest.moveReaderIndex(forwardBy: sent)
        case .failed: break
        }
        writeThroughNIO(rest, context: context)
    }

    /// Writes `bytes` through the pipeline (and flushes, unless told not to), counted in ``writesHeldByNIO``
    /// until the socket took them.
    private func writeThroughNIO(_ bytes: ByteBuffer, context: ChannelHandlerContext, flush: Bool = true) {
        writesThroughNIO &+= 1
        var written: EventLoopPromise<Void>?
        if socket != nil {
            writesHeldByNIO += 1
            written = context.eventLoop.makePromise(of: Void.self)
            // Called back on the loop, possibly from inside NIO's close0: it must not write (see `socket`).
            written?.futureResult.whenComplete { _ in self.writesHeldByNIO -= 1 }
        }
        context.write(wrapOutboundOut(bytes), promise: written)
        if flush { context.flush() }
    }

    // MARK: Lanes

    /// Whether a lane may write to the socket directly: the 101 is out, nothing of this connection waits in NIO
    /// or (queued by the loop) in the outbox, the socket is writable and no close frame has been queued. On the loop.
    var lanesMayWriteDirectly: Bool {
        socket != nil && writesHeldByNIO == 0 && !queuedOnLoop && isWritable && !closing && handshake == nil
    }

    /// Tells the loop's slot table whether lanes may write directly (called whenever an input changes).
    private func updateLaneAccess() {
        guard let fanoutMember else { return }
        loopFanout.setDirectDescriptor(lanesMayWriteDirectly ? socket?.descriptor : nil, of: fanoutMember)
    }

    /// Whether frames go straight to the socket (a descriptor was found), how many writes the socket took only in
    /// part, and how many were handed to NIO. Read on the event loop (for tests).
    var directWrites: (enabled: Bool, shortWrites: Int, throughNIO: Int) { (socket != nil, Int(shortWrites), Int(writesThroughNIO)) }

    /// Bytes of the outbound buffer's fullest moment, queued messages replaced by newer ones, and whether it is closed.
    var outboxStatistics: (peakBytes: Int, replaced: Int, closed: Bool) { outbox.statistics }

    private func writeControl(_ opcode: WebSocketWireFrame.Opcode, payload: ByteBuffer) {
        writeImmediately(WebSocketWireFrame.frame(opcode, payload: payload))
    }

    /// Writes a control frame ahead of anything still queued (RFC 6455 §5.4 lets control frames interleave).
    private func writeImmediately(_ frame: ByteBuffer) {
        guard let context else { return }
        writeOut(frame, context: context)
    }

    // MARK: Admin API

    /// Reads the connection's state on its event loop.
    public func describe() async throws -> ConnectionDescription {
        try await eventLoop.submit { [self] in
            ConnectionDescription(
                transport: "websocket", id: id, ip: reservation.ip, role: session.identity.role, userId: session.identity.userId,
                connectedAt: connectedAt, channels: session.subscriptions.sorted(), messagesIn: messagesIn,
                messagesOut: messagesOut + (fanoutMember.map { loopFanout.messagesOut(of: $0) } ?? 0))
        }.get()
    }

    /// Closes the connection from any thread (admin disconnect: 4000 with the given reason).
    public func disconnect(code: CloseCode, reason: String) {
        eventLoop.execute { self.handleSession(.closeRequested(code, reason: reason)) }
    }

    // MARK: Closing

    /// Sends a close frame with `code` and closes the connection (at once, or when the client answers); after
    /// a refused frame also ends our side of the TCP stream (see ``refuseInput``).
    private func close(code: CloseCode, reason: String) {
        eventLoop.assertInEventLoop()
        guard !closing, let context else { return }
        closing = true
        node.logger.debug("closing connection", metadata: ["sb.conn.id": "\(id)", "sb.close.code": "\(code.rawValue)"])
        // Queued messages are still written ahead of the close frame, except for a slow consumer's.
        if code != .slowConsumer { drainOutbox() }
        outbox.close()
        writeImmediately(WebSocketWireFrame.close(code: code.rawValue, reason: reason))
        // NIO shuts the output down once the bytes it holds are written, so the FIN follows the close frame.
        if endingOutput { context.close(mode: .output, promise: nil) }
        // RFC 6455 §7.1.1: wait for the client's close frame (or the end of its stream), then drop the TCP connection.
        context.channel.close(after: Self.closeGrace)
    }

    /// Called by the loop's ``HeartbeatTimer`` about once per heartbeat interval: drops a client that left our
    /// last ping unanswered and has sent nothing for two intervals (SPEC §3), otherwise pings. A ping always
    /// comes first, so a late timer can never drop a client that was not given its chance to answer.
    func checkHeartbeat() {
        guard !closing else { return }
        let now = NIODeadline.now()
        if let lastPing, lastActivity < lastPing, now - lastActivity >= .milliseconds(Int64(node.settings.heartbeatMs) * 2) {
            node.logger.debug("heartbeat timeout", metadata: ["sb.conn.id": "\(id)"])
            // The peer is gone or stuck: there is no one to send a close frame to.
            context?.close(promise: nil)
        } else {
            lastPing = now
            push(.ping)
        }
    }

    /// The transport ended: from here on the descriptor may be closed (see `socket`); the session ends with it.
    private func tearDown() {
        socket = nil
        guard !tornDown else { return }
        tornDown = true
        closing = true
        outbox.close()
        handleSession(.transportClosed)
    }
}
