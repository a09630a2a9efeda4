import Logging
import NIOCore
import SwitchboardCore

/// One Engine.IO 4 session and the Socket.IO 5 session inside it (SPEC §9), on one event loop: the glue that
/// carries out what the pure state machines (``EngineSession``, ``SocketIOSession``) decide, over whichever
/// transport the client uses at the moment (held polling GETs, then a WebSocket).
///
/// Until the client's CONNECT is admitted there is no ``SocketIOClient``: the session holds no pool slot and
/// is dropped after the connect timeout (`auth-timeout-ms`).
///
/// Every packet for the client, Engine.IO's own (`open` on a WebSocket, pings, `close`) and Socket.IO's (the
/// CONNECT answer, replies, messages), waits in one ``Outbox`` owned here, bounded by `outbound-buffer-bytes`,
/// until a drain moves it to the transport of the moment: written on the WebSocket, or the answer to the held
/// poll GET. A packet queued at any moment of the polling → WebSocket upgrade is therefore delivered once, in
/// order: it is in the queue until the one drain that takes it.
///
/// `@unchecked Sendable`: every member is confined to `eventLoop`; other threads reach it through
/// `eventLoop.execute` (see ``SocketIOClient``).
final class EngineConnection: @unchecked Sendable {
    let node: Node
    let eventLoop: any EventLoop
    /// The session's slot in the pools, taken at the handshake (anonymous) and moved to the user at CONNECT.
    let reservation: SlotReservation
    var ip: String { reservation.ip }
    /// The CONNECT was admitted (the session counts as a connection from then on, not as awaiting one).
    private var wasAdmitted = false
    var sid: String { engine.sid }
    private var engine: EngineSession
    private var socketIO: SocketIOSession
    /// The admitted Socket.IO session, from CONNECT to the end.
    private(set) var client: SocketIOClient?
    /// The held poll GET, answered with packets.
    private var pendingPoll: EventLoopPromise<[EnginePacket]>?
    /// The session's WebSocket (opened on it, or upgraded to it), and one probing an upgrade.
    private var webSocket: EngineWebSocket? { didSet { updateLaneAccess() } }
    private var probe: EngineWebSocket?
    private var ticker: RepeatedTask?
    /// The Socket.IO session ended (a DISCONNECT or CONNECT_ERROR waits to be written): the transport closes
    /// once everything queued is out, or at `closeDeadline`.
    private var closeDeadline: NIODeadline? { didSet { updateLaneAccess() } }
    private var closeCode: CloseCode = .normal
    private(set) var isFinished = false { didSet { updateLaneAccess() } }
    /// The session's one outbound queue (SPEC §5's bound), shared with its ``SocketIOClient``.
    let outbox: Outbox
    /// Something the loop itself queued waits in the outbox: lanes queue behind it until a drain takes it.
    private var queuedOnLoop = false { didSet { updateLaneAccess() } }
    /// Engine.IO packets queued since the last drain (not Socket.IO packets: not counted as messages out).
    private var enginePacketsQueued = 0
    /// The deliveries of the drain in progress (storage reused from drain to drain).
    private var draining: [Delivery] = []
    private let drainScheduler: DrainScheduler
    /// This loop's permessage-deflate compressor (with `compression` on), used while the WebSocket negotiated it.
    private let loopDeflater: MessageDeflater?
    /// SPEC §7's message rate until the CONNECT is admitted (the session's own applies after).
    private var rateBeforeConnect: MessageRateLimiter

    init(node: Node, eventLoop: any EventLoop, reservation: SlotReservation, transport: EngineTransport) {
        self.node = node
        self.eventLoop = eventLoop
        self.reservation = reservation
        let settings = node.settings
        let configuration = EngineSession.Configuration(
            pingIntervalMs: Int64(settings.heartbeatMs), pingTimeoutMs: Int64(settings.socketIOPingTimeoutMs),
            maxPayload: settings.maxMessageBytes)
        let now = Self.now()
        self.engine = EngineSession(sid: Self.makeSid(), transport: transport, configuration: configuration, now: now)
        self.socketIO = SocketIOSession(now: now, connectTimeoutMs: Int64(settings.authTimeoutMs))
        self.drainScheduler = node.drainSchedulers[eventLoop]
        self.outbox = Outbox(limit: settings.outboundBufferBytes)
        self.loopDeflater = node.deflaters[eventLoop]
        self.rateBeforeConnect = MessageRateLimiter(perMinute: settings.messageRate, burst: settings.messageBurst)
    }

    /// Milliseconds on the monotonic clock the state machines run on.
    static func now() -> Int64 { Int64(NIODeadline.now().uptimeNanoseconds / 1_000_000) }

    private static func makeSid() -> String {
        String(RandomWords.next(), radix: 36) + String(RandomWords.next(), radix: 36)
    }

    /// How often the clocks of the state machines are advanced (pings, timeouts).
    private var tickInterval: TimeAmount {
        .milliseconds(max(20, min(1_000, Int64(node.settings.heartbeatMs) / 5)))
    }

    // MARK: Opening

    /// Starts a polling session: the answer to its handshake GET.
    func openPolling() -> [EnginePacket] {
        eventLoop.assertInEventLoop()
        start()
        return [engine.openPacket]
    }

    /// Starts a session on `webSocket`: the open packet is its first frame.
    func openWebSocket(_ webSocket: EngineWebSocket) {
        eventLoop.assertInEventLoop()
        self.webSocket = webSocket
        start()
        perform(engine.opened())
    }

    private func start() {
        node.engineSessions.add(self)
        ticker = eventLoop.scheduleRepeatedTask(initialDelay: tickInterval, delay: tickInterval) { [self] _ in tick() }
    }

    // MARK: Polling

    /// A poll GET: answered with packets at once or when some arrive (or a ping is due).
    func poll() -> EventLoopFuture<[EnginePacket]> {
        eventLoop.assertInEventLoop()
        let promise = eventLoop.makePromise(of: [EnginePacket].self)
        // A second GET while one is held: the engine refuses it (through `request`) and answers the held one.
        if pendingPoll == nil { pendingPoll = promise }
        perform(engine.poll(), request: promise)
        drainOutbox()
        return promise.futureResult
    }

    /// Whether a poll GET is held, waiting for packets. On the loop (for tests).
    var isPollHeld: Bool { pendingPoll != nil }

    /// Whether a WebSocket is probing an upgrade of this polling session. On the loop (for tests).
    var isProbing: Bool { probe != nil }

    /// The client of a held GET went away before it was answered: the next GET gets what is queued.
    func abandon(_ answer: EventLoopFuture<[EnginePacket]>) {
        guard let pendingPoll, pendingPoll.futureResult === answer else { return }
        self.pendingPoll = nil
        engine.pollAbandoned()
        pendingPoll.fail(EngineHTTPError.badRequest("the poll was abandoned"))
    }

    /// A POST of packets: its answer is `ok` unless the engine refuses it.
    func post(_ body: ByteBuffer) -> EventLoopFuture<Void> {
        eventLoop.assertInEventLoop()
        let promise = eventLoop.makePromise(of: [EnginePacket].self)
        perform(engine.posted(body.readableBytesView), request: promise)
        promise.succeed([])
        return promise.futureResult.map { _ in }
    }

    // MARK: WebSocket

    /// A WebSocket asks to take over this polling session (`transport=websocket&sid=…`).
    func attachProbe(_ webSocket: EngineWebSocket) -> Bool {
        eventLoop.assertInEventLoop()
        guard !isFinished, engine.transport == .polling, probe == nil else { return false }
        probe = webSocket
        return true
    }

    /// A text frame from the session's WebSocket or from its upgrade probe.
    func webSocketReceived(_ text: ByteBuffer, from socket: EngineWebSocket) {
        guard !isFinished, socket === webSocket || socket === probe else { return }
        let packet: EnginePacket
        do {
            packet = try EnginePacket.decode(text: text.readableBytesView)
        } catch {
            socket.close(code: .protocolError, reason: "bad Engine.IO packet")
            if socket === webSocket { finish(reason: "bad packet: \(error.description)") }
            return
        }
        // Engine.IO's own packets (a probe's `2probe`, `5`, `6`…) count toward the message rate like any client
        // packet (SPEC §7); message packets count as Socket.IO packets, and pongs answer our pings.
        if packet.kind != .message && packet.kind != .pong { controlReceived() }
        guard !isFinished else { return }
        let wasPolling = engine.transport == .polling
        perform(engine.webSocketReceived(packet))
        // The upgrade completed (``EngineSession/Action/upgraded``): what waited in the client's outbox follows.
        if wasPolling, engine.transport == .websocket { drainOutbox() }
    }

    /// A binary frame: Switchboard carries JSON only.
    func webSocketReceivedBinary(from socket: EngineWebSocket) {
        guard socket === webSocket else { return }
        perform(engine.webSocketReceived(.binary([])))
    }

    /// A WebSocket ended: the session's ends the session; a probe's leaves it on polling.
    func webSocketClosed(_ socket: EngineWebSocket) {
        if socket === probe {
            probe = nil
            engine.probeAbandoned()
        } else if socket === webSocket {
            webSocket = nil
            perform(engine.transportClosed(reason: "WebSocket closed"))
        }
    }

    // MARK: Outbound

    /// Whether the session's WebSocket compresses what it is sent.
    var webSocketCompresses: Bool { webSocket?.compresses == true && loopDeflater != nil }

    /// The descriptor the client's channel lanes may write to directly (see ``LoopFanout``): the session is on
    /// its WebSocket, which allows direct writes, with frames of the lanes' kind; the client has nothing queued
    /// by the loop; the session is not ending.
    private var laneDescriptor: CInt? {
        guard !isFinished, closeDeadline == nil, engine.transport == .websocket, let client, !queuedOnLoop,
            let webSocket, webSocketCompresses == client.lanesCompress
        else { return nil }
        return webSocket.directDescriptorForSession
    }

    /// Tells the client's slot table whether lanes may write directly (whenever an input changes). On the loop;
    /// it never writes (it may run inside NIO's close).
    func updateLaneAccess() {
        client?.setLaneDescriptor(laneDescriptor)
    }

    /// The WebSocket's own direct-write state changed.
    func directAccessChanged(of socket: EngineWebSocket) {
        if socket === webSocket { updateLaneAccess() }
    }

    /// Hands what a lane's direct write left to the WebSocket (dropped if the session has left it).
    func finishDirectWrite(_ bytes: ByteBuffer, outcome: SocketWriter.Outcome) {
        webSocket?.finishDirectWrite(bytes, outcome: outcome)
    }

    /// Queues a packet for the client (any thread): behind what waits, drained by the loop's ``DrainScheduler``.
    /// Past `outbound-buffer-bytes` the session is a slow consumer (SPEC §5).
    func enqueue(_ delivery: Delivery) {
        let result = outbox.push(delivery)
        if result != .closed && eventLoop.inEventLoop { queuedOnLoop = true }
        result.apply(statistics: node.statistics) {
            drainScheduler.markDirty(self)
        } overflow: {
            self.eventLoop.execute { self.overflowed() }
        }
    }

    /// Queues one of Engine.IO's own packets (on the loop).
    private func enqueue(_ packet: EnginePacket) {
        var text = ByteBuffer()
        packet.write(into: &text)
        enginePacketsQueued += 1
        enqueue(Delivery(payload: text))
    }

    /// Sends a Socket.IO packet: the CONNECT answer, a refusal before the client exists, a DISCONNECT.
    private func enqueue(_ packet: SocketPacket) {
        enqueue(SocketIOCodec.delivery(packet))
    }

    /// The outbox overflowed: the client does not read (SPEC §5).
    private func overflowed() {
        if let client {
            client.handleSession(.closeRequested(.slowConsumer, reason: "slow consumer: outbound buffer full"))
        } else {
            end(code: .slowConsumer, reason: "slow consumer: outbound buffer full")
        }
    }

    /// Moves what the outbox holds to the transport, when the transport can take it: a writable WebSocket, or a
    /// held poll GET. Otherwise it waits in the outbox, which bounds it (SPEC §5).
    /// - Parameter countingBytes: add the bytes written to the node's counter (the loop's ``DrainScheduler``
    ///   counts a whole run of sessions at once instead).
    /// - Returns: the bytes written (or handed to the held poll).
    @discardableResult
    func drainOutbox(countingBytes: Bool = true) -> Int {
        guard !isFinished else { return 0 }
        var bytes = 0
        if engine.transport == .websocket {
            guard let webSocket, webSocket.isWritableForSession else { return 0 }
            take()
            guard !draining.isEmpty else {
                closeIfFlushed()
                return 0
            }
            let deflater = webSocket.compresses ? loopDeflater : nil
            var compressed = CompressedBytes()
            if draining.count == 1 {
                let frame = LaneFormat.Codec.socketIO.frame(of: draining[0], deflater: deflater, counting: &compressed)
                bytes = frame.readableBytes
                webSocket.send(frame)
            } else {
                // One write for the whole drain, gathered in the loop's reused storage.
                var frames = drainScheduler.takeGatherBuffer()
                for delivery in draining {
                    frames.append(LaneFormat.Codec.socketIO.frame(of: delivery, deflater: deflater, counting: &compressed))
                }
                bytes = frames.bytes
                webSocket.send(frames.output)
                drainScheduler.returnGatherBuffer(frames)
            }
            compressed.record(in: node.statistics)
            draining.removeAll(keepingCapacity: true)
            closeIfFlushed()
        } else {
            guard engine.isPollPending, outbox.hasQueued else { return 0 }
            take()
            guard !draining.isEmpty, engine.takePoll() else {
                draining.removeAll(keepingCapacity: true)
                return 0
            }
            var packets: [EnginePacket] = []
            packets.reserveCapacity(draining.count)
            for delivery in draining {
                let packet = delivery.isMessage ? SocketIOCodec.messagePacket(of: delivery) : delivery.payload
                guard let decoded = try? EnginePacket.decode(text: packet.readableBytesView) else { continue }
                bytes += packet.readableBytes
                packets.append(decoded)
            }
            draining.removeAll(keepingCapacity: true)
            perform([.answerPoll(packets)])
        }
        if countingBytes { node.statistics.recordBytesOut(bytes) }
        return bytes
    }

    /// Takes everything queued into ``draining``, counting the Socket.IO packets among it as written.
    private func take() {
        outbox.takeAll(into: &draining)
        queuedOnLoop = false
        client?.recordWritten(max(0, draining.count - enginePacketsQueued))
        enginePacketsQueued = 0
    }

    // MARK: Socket.IO

    private func socketIOReceived(_ data: [UInt8]) {
        // Every client packet counts toward the message rate (SPEC §7): before CONNECT here, after it in the session.
        if client == nil, !admitBeforeConnect() { return }
        perform(socketIO.received(data))
    }

    /// A client packet that asks for nothing (a WebSocket ping, an ack, another namespace's packet) counts.
    func controlReceived() {
        if let client {
            client.handleSession(.controlReceived)
        } else {
            _ = admitBeforeConnect()
        }
    }

    /// The message rate for packets before the session is admitted: over it, dropped; far over it, the end.
    private func admitBeforeConnect() -> Bool {
        switch rateBeforeConnect.check() {
        case .allow:
            return true
        case .limit:
            node.statistics.recordRateLimited(.messageRate)
            return false
        case .abuse:
            node.statistics.recordRateLimited(.messageAbuse)
            finish(reason: "message rate abused before CONNECT")
            return false
        }
    }

    private func perform(_ actions: some Sequence<SocketIOSession.Action>) {
        for action in actions {
            switch action {
            case .authenticate(let token): authenticate(token: token)
            case .request(let request): client?.receive(request)
            case .unanswered: controlReceived()
            case .send(let packet):
                enqueue(packet)
            case .close(let reason): finish(reason: reason)
            }
        }
    }

    private func authenticate(token: String?) {
        let admission = UpgradeAdmission(node: node)
        admission.admitConnect(reservation, token: token, on: eventLoop).whenComplete { [self] result in
            guard !isFinished else {
                if case .success(let admitted) = result { admitted.reservation.release() }
                return
            }
            switch result {
            case .success(let admitted):
                wasAdmitted = true
                node.engineSessions.admitted(self)
                let client = SocketIOClient(engine: self, admitted: admitted)
                let actions = socketIO.accepted(sid: client.id)
                // The CONNECT answer first, then the session opens, then the packets that arrived while the
                // CONNECT was checked.
                if case .send(let packet)? = actions.first { enqueue(packet) }
                self.client = client
                client.start(transport: engine.transport == .websocket ? .webSocket : .polling)
                perform(actions.dropFirst())
                drainOutbox()
            case .failure(let error):
                let rejection = error as? UpgradeRejection
                let code = rejection?.code ?? .internalError
                for action in socketIO.refused(code: code.description, message: rejection?.message ?? "connect failed") {
                    switch action {
                    case .send(let packet): enqueue(packet)
                    case .close: endAfterFlush(code: .normal)
                    default: break
                    }
                }
            }
        }
    }

    /// Ends the session for `code` (SPEC §9): an admin disconnect, a block, an expired token or abuse end the
    /// Socket.IO session with DISCONNECT (the client does not reconnect); shutdown and a slow consumer end the
    /// transport only (the client reconnects).
    func end(code: CloseCode, reason: String) {
        eventLoop.assertInEventLoop()
        guard !isFinished, closeDeadline == nil else { return }
        node.logger.debug("closing Socket.IO session", metadata: ["sb.conn.id": "\(client?.id ?? sid)", "sb.close.code": "\(code.rawValue)"])
        switch code {
        case .goingAway, .slowConsumer:
            if engine.transport == .polling {
                enqueue(EnginePacket(.close))
                endAfterFlush(code: code)
            } else {
                webSocket?.close(code: code, reason: reason)
                finish(reason: reason)
            }
        default:
            for action in socketIO.disconnect(reason: reason) {
                if case .send(let packet) = action { enqueue(packet) }
            }
            endAfterFlush(code: .normal)
        }
    }

    /// The session ends once what is queued has gone out (bounded: at most one poll interval of waiting).
    private func endAfterFlush(code: CloseCode) {
        closeCode = code
        closeDeadline = .now() + .seconds(5)
        outbox.seal()
        drainOutbox()
        closeIfFlushed()
    }

    private func closeIfFlushed() {
        guard closeDeadline != nil, !isFinished, !outbox.hasQueued else { return }
        if engine.transport == .websocket {
            webSocket?.close(code: closeCode, reason: "")
        }
        finish(reason: "session ended")
    }

    // MARK: Actions

    /// Carries out the engine's actions; `request` is the HTTP request being handled (its refusal).
    private func perform(_ actions: [EngineSession.Action], request: EventLoopPromise<[EnginePacket]>? = nil) {
        for action in actions {
            switch action {
            case .answerPoll(let packets):
                pendingPoll?.succeed(packets)
                pendingPoll = nil
                closeIfFlushed()
            case .send(let packet):
                enqueue(packet)
            case .writeProbe(let packet):
                probe?.send(SocketIOCodec.frame(packet))
            case .upgraded:
                // From here on the outbox drains to the WebSocket (``webSocketReceived(_:from:)`` drains it now).
                webSocket = probe
                probe = nil
                client?.transport = .webSocket
            case .received(let data):
                socketIOReceived(data)
            case .refuse(let error):
                if let request {
                    request.fail(error)
                    if pendingPoll?.futureResult === request.futureResult { pendingPoll = nil }
                }
            case .close(let reason):
                finish(reason: reason)
            }
            if isFinished { break }
        }
    }

    private func tick() {
        guard !isFinished else { return }
        let now = Self.now()
        perform(engine.tick(now: now))
        for action in socketIO.tick(now: now) {
            if case .close(let reason) = action { finish(reason: reason) }
        }
        if let closeDeadline, NIODeadline.now() >= closeDeadline { finish(reason: "session ended") }
    }

    /// Ends everything: transports, the Socket.IO client (its slot, subscriptions and counters), the timer.
    func finish(reason: String) {
        guard !isFinished else { return }
        // What is queued still goes out ahead of the close (a slow consumer's outbox was emptied when it overflowed).
        // The drain's own close check may finish the session meanwhile.
        if engine.transport == .websocket && outbox.hasQueued {
            drainOutbox()
            guard !isFinished else { return }
        }
        isFinished = true
        node.logger.debug("Socket.IO session ended", metadata: ["sb.conn.id": "\(client?.id ?? sid)", "sb.reason": "\(reason)"])
        ticker?.cancel()
        ticker = nil
        outbox.close()
        pendingPoll?.succeed([EnginePacket(.close)])
        pendingPoll = nil
        _ = engine.transportClosed(reason: reason)
        webSocket?.close(code: closeCode, reason: "")
        probe?.close(code: .normal, reason: "")
        webSocket = nil
        probe = nil
        client?.tearDown()
        client = nil
        reservation.release()
        node.engineSessions.remove(self, wasAdmitted: wasAdmitted)
    }
}
