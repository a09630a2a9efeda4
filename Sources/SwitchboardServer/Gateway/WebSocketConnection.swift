import Foundation
import Logging
import NIOCore
import SwitchboardCore

/// One upgraded `/ws` connection (SPEC §3): the session's protocol logic and the bounded outbound queue, on the
/// node's one WebSocket transport (``WebSocketTransport``: frames, pongs, the close handshake, the writes).
///
/// Writes queued from any thread are drained on the event loop and flushed once per drain; channel messages
/// reach it through its loop's lanes (``LoopFanout``), which write straight to the socket while
/// ``lanesMayWriteDirectly``.
///
/// `@unchecked Sendable`: the hub calls ``deliver(_:)`` from other threads, which only touches the
/// thread-safe ``Outbox`` and hops to the event loop; every other member is confined to `eventLoop`.
final class WebSocketConnection: WebSocketTransport, SessionTransport, LaneMemberConnection, @unchecked Sendable {
    /// The connection id given in `welcome` (made with the connection's pool slot, so the cluster lease can name it).
    var id: String { reservation.connectionId }
    /// The client's IP address.
    var ip: String { reservation.ip }
    var metricsTransport: NodeStatistics.Transport { .websocket }
    let node: Node
    /// The connection's event loop (not stored: an existential costs 40 bytes a connection).
    var eventLoop: any EventLoop { channel.eventLoop }
    let reservation: SlotReservation
    /// The loop's permessage-deflate compressor when the client negotiated it (SPEC §12): messages of at least
    /// `compression-min-bytes` leave as the shared compressed frames, and the client may compress its own.
    /// Read from the slot table (compressing connections sit in the compressing one): no field per connection.
    private var deflater: MessageDeflater? { loopFanout.deflater }
    override var inflater: MessageDeflater? { loopFanout.deflater }
    private let outbox: Outbox
    /// The deliveries of the drain in progress: swapped with the outbox's queue, so draining allocates nothing.
    private var draining: [Delivery] = []
    private let drainScheduler: DrainScheduler
    /// The loop's slot table, through which channel lanes write to this connection (see ``LoopFanout``): the
    /// loop's batch-frame table for `?batch=true` connections.
    private let loopFanout: LoopFanout
    /// This connection's slot in ``loopFanout``, from `handlerAdded` to the end of the session.
    private var fanoutMember: UInt64?
    /// Something the loop itself queued (a reply, a replay, a lane's message it could not write directly) waits
    /// in the outbox: lanes queue behind it until a drain takes it. Pushes from other threads (global and
    /// per-user messages) are no channel's lane messages and do not hold lanes back.
    private var queuedOnLoop = false { didSet { directAccessChanged() } }
    /// `?batch=true`: consecutive messages leave in one `batch` frame.
    let wantsBatches: Bool
    /// The session protocol (SPEC §3), carried out by its driver.
    var session: SessionDriver<WebSocketConnection>
    private var lastActivity = NIODeadline.now()
    /// When the last heartbeat ping went out.
    private var lastPing: NIODeadline?
    /// Drains so far, wrapping, for sampling the latency histogram (every 16th; 32 bits fit in the padding after
    /// `lastPing`).
    private var drains: UInt32 = 0
    private let heartbeats: HeartbeatTimer
    /// When the upgrade completed.
    let connectedAt = Date()
    /// The upgrade's `?subscribe=` channels, until `handlerAdded` subscribes them.
    private var upgradeSubscriptions: [String]
    /// Messages received from and frames written to the client (event-loop confined).
    private var messagesIn = 0
    private var messagesOut = 0

    /// - Parameters:
    ///   - socket: the connection's descriptor's writer (nil under TLS).
    ///   - handshake: the `101` answer, for the connection to write in front of its first frame (nil when NIO's
    ///     upgrader wrote it).
    init(
        node: Node, admitted: AdmittedUpgrade, channel: any Channel, socket: SocketWriter?, compressed: Bool = false,
        handshake: ByteBuffer? = nil
    ) {
        self.node = node
        self.reservation = admitted.reservation
        self.wantsBatches = admitted.wantsBatches
        self.upgradeSubscriptions = admitted.subscriptions
        self.outbox = Outbox(limit: node.settings.outboundBufferBytes)
        self.drainScheduler = node.gateway.loops[channel.eventLoop].drainScheduler
        self.heartbeats = node.gateway.loops[channel.eventLoop].heartbeats
        let loopFanout = node.gateway.loops[channel.eventLoop].fanouts[LaneFormat(batches: admitted.wantsBatches, compressed: compressed)]
        self.loopFanout = loopFanout
        self.session = SessionDriver(identity: admitted.identity, rules: node.sessionRules)
        super.init(
            channel: channel, socket: socket, maxMessageBytes: node.settings.maxMessageBytes,
            acceptsCompressedMessages: loopFanout.deflater != nil, handshake: handshake)
    }

    // MARK: Transport events

    override func handlerAdded(context: ChannelHandlerContext) {
        super.handlerAdded(context: context)
        fanoutMember = loopFanout.register(self)
        directAccessChanged()
        send(ServerMessage.welcome(connectionId: id, identity: session.identity, heartbeatMs: Int(node.settings.heartbeat.milliseconds)))
        SessionDriver.open(self)
        heartbeats.add(self)
        if !upgradeSubscriptions.isEmpty {
            handleSession(.subscribeAtUpgrade(upgradeSubscriptions))
            upgradeSubscriptions = []
        }
    }

    override func transportRead(_ count: Int) {
        lastActivity = .now()
        node.statistics.recordBytesIn(count)
    }

    override func transportReceivedPing() {
        // Every client frame counts toward the message rate (SPEC §7).
        handleSession(.controlReceived)
    }

    override func transportRefusedInput(code: CloseCode, reason: String) {
        handleSession(.closeRequested(code, reason: reason))
    }

    override func transportWillClose(code: CloseCode) {
        node.logger.debug("closing connection", metadata: ["sb.conn.id": "\(id)", "sb.close.code": "\(code.rawValue)"])
        // Queued messages are still written ahead of the close frame, except for a slow consumer's.
        if code != .slowConsumer { drainOutbox() }
        outbox.close()
    }

    override func transportWritable() {
        drainOutbox()
    }

    override func transportQuiesce() {
        handleSession(.closeRequested(.goingAway, reason: "server shutting down"))
    }

    override func transportOverflowed() {
        node.statistics.recordSlowConsumerClose()
        handleSession(.closeRequested(.slowConsumer, reason: "slow consumer: outbound buffer full"))
    }

    /// The transport ended: the session ends with it.
    override func transportEnded() {
        outbox.close()
        handleSession(.transportClosed)
    }

    // MARK: Inbound messages

    override func transportReceived(_ payload: ByteBuffer, isText: Bool) {
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
        sendClose(code: code, reason: reason)
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
    func deliver(_ delivery: Delivery) {
        send(delivery)
    }

    /// Channel messages reach connections through their loop's lanes (batch lanes for `?batch=true`).
    var fanout: FanoutMembership? {
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

    /// Writes what the outbox holds if the socket is writable, then flushes once. On the event loop.
    ///
    /// Everything queued is written in one go: the outbox bounds it (outbound-buffer-bytes), so the socket's
    /// pending writes overshoot the high mark by at most that much. While the socket is not writable the
    /// queue stays in the outbox, which keeps its drain flag set; the writability change drains it.
    func drainOutbox() {
        guard isWritable, context != nil else { return }
        outbox.takeAll(into: &draining)
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
            write(frame)
        } else {
            // One write for everything drained: frames queued within one event-loop tick leave together.
            var frames = drainScheduler.takeGatherBuffer()
            gather(draining, into: &frames, counting: &compressed)
            written = frames.bytes
            write(frames.output)
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

    // MARK: Lanes

    /// Whether a lane may write to the socket directly: the transport allows it (``WebSocketTransport/mayWriteDirectly``)
    /// and nothing the loop queued waits in the outbox. On the loop.
    var lanesMayWriteDirectly: Bool { mayWriteDirectly && !queuedOnLoop }

    /// Tells the loop's slot table whether lanes may write directly (called whenever an input changes).
    override func directAccessChanged() {
        guard let fanoutMember else { return }
        loopFanout.setDirectDescriptor(queuedOnLoop ? nil : directDescriptor, of: fanoutMember)
    }

    /// Bytes of the outbound buffer's fullest moment, queued messages replaced by newer ones, and whether it is closed.
    var outboxStatistics: (peakBytes: Int, replaced: Int, closed: Bool) { outbox.statistics }

    // MARK: Admin API

    /// Reads the connection's state on its event loop.
    func describe() async throws -> ConnectionDescription {
        try await eventLoop.submit { [self] in
            ConnectionDescription(
                transport: "websocket", id: id, ip: reservation.ip, role: session.identity.role, userId: session.identity.userId,
                connectedAt: connectedAt, channels: session.subscriptions.sorted(), messagesIn: messagesIn,
                messagesOut: messagesOut + (fanoutMember.map { loopFanout.messagesOut(of: $0) } ?? 0))
        }.get()
    }

    /// Closes the connection from any thread (admin disconnect: 4000 with the given reason).
    func disconnect(code: CloseCode, reason: String) {
        eventLoop.execute { self.handleSession(.closeRequested(code, reason: reason)) }
    }

    func subscribedByServer(to channel: String) {
        eventLoop.execute { self.handleSession(.subscribedByServer(channel)) }
    }

    func unsubscribedByServer(from channel: String, reason: String) {
        eventLoop.execute { self.handleSession(.unsubscribedByServer(channel, reason: reason)) }
    }

    // MARK: Closing

    /// Called by the loop's ``HeartbeatTimer`` about once per heartbeat interval: drops a client that left our
    /// last ping unanswered and has sent nothing for two intervals (SPEC §3), otherwise pings. A ping always
    /// comes first, so a late timer can never drop a client that was not given its chance to answer.
    func checkHeartbeat() {
        guard !closing else { return }
        let now = NIODeadline.now()
        if let lastPing, lastActivity < lastPing, now - lastActivity >= TimeAmount(node.settings.heartbeat * 2) {
            node.logger.debug("heartbeat timeout", metadata: ["sb.conn.id": "\(id)"])
            // The peer is gone or stuck: there is no one to send a close frame to.
            context?.close(promise: nil)
        } else {
            lastPing = now
            sendPing()
        }
    }
}
