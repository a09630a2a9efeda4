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
    var wasAdmitted = false
    var sid: String { engine.sid }
    var engine: EngineSession
    var socketIO: SocketIOSession
    /// The admitted Socket.IO session, from CONNECT to the end.
    var client: SocketIOClient?
    /// The held poll GET, answered with packets.
    var pendingPoll: EventLoopPromise<[EnginePacket]>?
    /// The session's WebSocket (opened on it, or upgraded to it), and one probing an upgrade.
    var webSocket: EngineWebSocket? { didSet { updateLaneAccess() } }
    var probe: EngineWebSocket?
    var ticker: RepeatedTask?
    /// The Socket.IO session ended (a DISCONNECT or CONNECT_ERROR waits to be written): the transport closes
    /// once everything queued is out, or at `closeDeadline`.
    var closeDeadline: NIODeadline? { didSet { updateLaneAccess() } }
    var closeCode: CloseCode = .normal
    var isFinished = false { didSet { updateLaneAccess() } }
    /// The session's one outbound queue (SPEC §5's bound), shared with its ``SocketIOClient``.
    let outbox: Outbox
    /// Something the loop itself queued waits in the outbox: lanes queue behind it until a drain takes it.
    var queuedOnLoop = false { didSet { updateLaneAccess() } }
    /// Engine.IO packets queued since the last drain (not Socket.IO packets: not counted as messages out).
    var enginePacketsQueued = 0
    /// The deliveries of the drain in progress (storage reused from drain to drain).
    var draining: [Delivery] = []
    let drainScheduler: DrainScheduler
    /// This loop's permessage-deflate compressor (with `compression` on), used while the WebSocket negotiated it.
    let loopDeflater: MessageDeflater?
    /// SPEC §7's message rate until the CONNECT is admitted (the session's own applies after).
    var rateBeforeConnect: MessageRateLimiter
    /// The handshake request's headers for the connect proxy (SPEC §14), kept only when one is configured.
    let forwardedHeaders: [String: String]

    init(
        node: Node, eventLoop: any EventLoop, reservation: SlotReservation, transport: EngineTransport,
        forwardedHeaders: [String: String] = [:]
    ) {
        self.node = node
        self.forwardedHeaders = forwardedHeaders
        self.eventLoop = eventLoop
        self.reservation = reservation
        let settings = node.settings
        let configuration = EngineSession.Configuration(
            pingIntervalMs: settings.heartbeat.milliseconds, pingTimeoutMs: settings.socketIOPingTimeout.milliseconds,
            maxPayload: settings.maxMessageBytes)
        let now = Self.now()
        self.engine = EngineSession(sid: Self.makeSid(), transport: transport, configuration: configuration, now: now)
        self.socketIO = SocketIOSession(now: now, connectTimeoutMs: settings.authTimeout.milliseconds)
        self.drainScheduler = node.gateway.loops[eventLoop].drainScheduler
        self.outbox = Outbox(limit: settings.outboundBufferBytes)
        self.loopDeflater = node.gateway.loops[eventLoop].deflater
        self.rateBeforeConnect = MessageRateLimiter(perMinute: settings.messageRate, burst: settings.messageBurst)
    }

    /// Milliseconds on the monotonic clock the state machines run on.
    static func now() -> Int64 { Int64(NIODeadline.now().uptimeNanoseconds / 1_000_000) }

    static func makeSid() -> String {
        String(RandomWords.next(), radix: 36) + String(RandomWords.next(), radix: 36)
    }

    /// How often the clocks of the state machines are advanced (pings, timeouts).
    var tickInterval: TimeAmount {
        .milliseconds(max(20, min(1_000, node.settings.heartbeat.milliseconds / 5)))
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

    func start() {
        node.gateway.engineSessions.add(self)
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
    func endAfterFlush(code: CloseCode) {
        closeCode = code
        closeDeadline = .now() + .seconds(5)
        outbox.seal()
        drainOutbox()
        closeIfFlushed()
    }

    func closeIfFlushed() {
        guard closeDeadline != nil, !isFinished, !outbox.hasQueued else { return }
        if engine.transport == .websocket {
            webSocket?.close(code: closeCode, reason: "")
        }
        finish(reason: "session ended")
    }

    // MARK: Actions

    /// Carries out the engine's actions; `request` is the HTTP request being handled (its refusal).
    func perform(_ actions: [EngineSession.Action], request: EventLoopPromise<[EnginePacket]>? = nil) {
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

    func tick() {
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
        node.gateway.engineSessions.remove(self, wasAdmitted: wasAdmitted)
    }
}
