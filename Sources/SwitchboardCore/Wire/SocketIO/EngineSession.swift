/// One Engine.IO 4 session as a pure state machine (SPEC §9): the transports feed it what arrives and what
/// the layer above sends, and carry out the actions it returns; it holds the rules.
///
/// - Outbound packets, the server's own (`open` on a WebSocket, pings) and the layer above's, wait in one queue
///   that the glue owns (bounded in bytes: past the bound the session ends, a slow consumer). The session says
///   where they may go: ``Action/send(_:)`` queues a packet, and ``takePoll()`` tells whether a held GET may take
///   what waits; on a WebSocket everything queued is written as it comes.
/// - Long-polling: at most one pending GET, answered with every queued packet (at once when packets wait,
///   else when some arrive or a ping is due); POSTed bodies are decoded within `maxPayload`. A second pending
///   GET, a bad body or a binary packet ends the session.
/// - The server pings every `pingInterval` and ends a session whose pong does not come within `pingTimeout`.
/// - Upgrade: on a polling session a WebSocket sends `2probe` (answered `3probe`, and the pending GET gets a
///   `noop` so polling stops), then `5`; from then on the one queue drains to the WebSocket, so a packet
///   queued at any moment of the upgrade leaves once, in order.
public struct EngineSession: Sendable {
    public struct Configuration: Sendable {
        public var pingIntervalMs: Int64
        public var pingTimeoutMs: Int64
        public var maxPayload: Int

        public init(pingIntervalMs: Int64 = 25_000, pingTimeoutMs: Int64 = 20_000, maxPayload: Int = 1_000_000) {
            self.pingIntervalMs = pingIntervalMs
            self.pingTimeoutMs = pingTimeoutMs
            self.maxPayload = maxPayload
        }
    }

    public enum Action: Sendable, Equatable {
        /// Answer the pending (or the current) poll GET with these packets, ahead of the queue (an `open`, a
        /// `noop` while upgrading, the `close` of an ended session).
        case answerPoll([EnginePacket])
        /// Queue this packet for the client, behind what waits (written at once on a WebSocket).
        case send(EnginePacket)
        /// Write this packet on the WebSocket that is probing an upgrade.
        case writeProbe(EnginePacket)
        /// The upgrade completed: the probing WebSocket is the session's transport from this action on, and what
        /// waits in the queue drains to it.
        case upgraded
        /// A message packet's data, for the layer above (Socket.IO).
        case received([UInt8])
        /// Refuse the current HTTP request with this error.
        case refuse(EngineHTTPError)
        /// End the session: close its transports.
        case close(reason: String)
    }

    public let sid: String
    public let configuration: Configuration
    public private(set) var transport: EngineTransport
    public private(set) var isClosed = false
    private var pollPending = false
    /// A poll GET is held, waiting for packets.
    public var isPollPending: Bool { pollPending }
    /// A probe was answered: the pending GET (or the next one) is answered with a `noop`.
    private var upgrading = false
    private var nextPingAt: Int64
    private var pongDeadline: Int64?

    /// - Parameter now: milliseconds on a monotonic clock (every later `now` on the same clock).
    public init(sid: String, transport: EngineTransport, configuration: Configuration, now: Int64) {
        self.sid = sid
        self.transport = transport
        self.configuration = configuration
        self.nextPingAt = now + configuration.pingIntervalMs
    }

    /// The `open` packet, sent first on every session.
    public var openPacket: EnginePacket {
        let upgrades: [JSONValue] = transport == .polling ? [.string("websocket")] : []
        return EnginePacket(.open, text: JSONValue.object([
            "sid": .string(sid), "upgrades": .array(upgrades), "pingInterval": .int(configuration.pingIntervalMs),
            "pingTimeout": .int(configuration.pingTimeoutMs), "maxPayload": .int(Int64(configuration.maxPayload)),
        ]).jsonText)
    }

    /// The handshake: the open packet, as the answer to the handshake GET or the first WebSocket frame.
    public func opened() -> [Action] {
        transport == .polling ? [.answerPoll([openPacket])] : [.send(openPacket)]
    }

    // MARK: Long-polling

    /// A poll GET arrived: held, for what waits in the queue now or arrives later (``takePoll()``).
    public mutating func poll() -> [Action] {
        guard !isClosed else { return [.refuse(.unknownSession)] }
        guard transport == .polling else { return [.refuse(.badRequest("the session moved to WebSocket"))] }
        guard !pollPending else { return end(.badRequest("a poll is already pending"), "overlapping polls") }
        if upgrading { return [.answerPoll([EnginePacket(.noop)])] }
        pollPending = true
        return []
    }

    /// Whether the held poll GET may be answered with what waits in the queue now: true once, then the GET is
    /// no longer held (the glue answers it with the queue's packets).
    public mutating func takePoll() -> Bool {
        guard !isClosed, transport == .polling, pollPending else { return false }
        pollPending = false
        return true
    }

    /// A POST of packets arrived (its answer is `ok` unless an action refuses it).
    public mutating func posted(_ body: some Collection<UInt8>) -> [Action] {
        guard !isClosed else { return [.refuse(.unknownSession)] }
        guard transport == .polling || upgrading else { return [.refuse(.badRequest("the session moved to WebSocket"))] }
        let packets: [EnginePacket]
        do {
            packets = try EnginePayload.decode(body, maxBytes: configuration.maxPayload)
        } catch {
            return end(.badRequest(error.description), "bad polling payload")
        }
        var actions: [Action] = []
        for packet in packets where !isClosed {
            actions += handle(packet)
        }
        return actions
    }

    /// The pending GET went away (the client closed its request): it can no longer be answered, and what is
    /// queued waits for the next one.
    public mutating func pollAbandoned() {
        pollPending = false
    }

    /// The WebSocket probing an upgrade closed before it sent `5`: the session stays on polling, and the next
    /// GET gets what is queued instead of a `noop` (as Engine.IO's reference server does).
    public mutating func probeAbandoned() {
        upgrading = false
    }

    // MARK: WebSocket

    /// A packet on the session's WebSocket, or on the WebSocket probing an upgrade of a polling session.
    public mutating func webSocketReceived(_ packet: EnginePacket) -> [Action] {
        guard !isClosed else { return [] }
        guard transport == .polling else { return handle(packet) }
        switch (packet.kind, packet.text) {
        case (.ping, "probe"?):
            upgrading = true
            var actions: [Action] = [.writeProbe(EnginePacket(.pong, text: "probe"))]
            if pollPending {
                pollPending = false
                actions.append(.answerPoll([EnginePacket(.noop)]))
            }
            return actions
        case (.upgrade, _) where upgrading:
            transport = .websocket
            upgrading = false
            return [.upgraded]
        default:
            return end(nil, "unexpected packet while probing an upgrade")
        }
    }

    // MARK: Both transports

    /// The clock moved: a ping when one is due, the end of a session whose pong is late.
    public mutating func tick(now: Int64) -> [Action] {
        guard !isClosed else { return [] }
        if let deadline = pongDeadline, now >= deadline { return end(nil, "ping timeout") }
        guard pongDeadline == nil, now >= nextPingAt else { return [] }
        pongDeadline = now + configuration.pingTimeoutMs
        nextPingAt = now + configuration.pingIntervalMs
        return [.send(EnginePacket(.ping))]
    }

    /// The transport ended (a WebSocket closed, a polling client stopped polling).
    public mutating func transportClosed(reason: String) -> [Action] {
        guard !isClosed else { return [] }
        return end(nil, reason)
    }

    private mutating func handle(_ packet: EnginePacket) -> [Action] {
        switch packet.kind {
        case .pong:
            pongDeadline = nil
            return []
        case .message where !packet.isBinary:
            return [.received(packet.data)]
        case .message:
            return end(.badRequest("binary messages are not supported"), "binary message")
        case .close:
            return end(nil, "client closed the session")
        case .noop:
            return []
        case .ping, .open, .upgrade:
            // Engine.IO 4: only the server pings; open and upgrade are not the client's to send here.
            return end(.badRequest("unexpected packet type \(packet.kind.rawValue)"), "unexpected packet")
        }
    }

    /// Ends the session (refusing the current request first, when given).
    private mutating func end(_ refusal: EngineHTTPError?, _ reason: String) -> [Action] {
        isClosed = true
        var actions: [Action] = refusal.map { [.refuse($0)] } ?? []
        if pollPending {
            pollPending = false
            actions.append(.answerPoll([EnginePacket(.close)]))
        }
        actions.append(.close(reason: reason))
        return actions
    }
}
