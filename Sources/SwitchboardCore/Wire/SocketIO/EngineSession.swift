/// One Engine.IO 4 session as a pure state machine (SPEC §9): the transports feed it what arrives and what
/// the layer above sends, and carry out the actions it returns; it holds the rules.
///
/// - Long-polling: at most one pending GET, answered with every queued packet (at once when packets wait,
///   else when some arrive or a ping is due); POSTed bodies are decoded within `maxPayload`. A second pending
///   GET, a bad body or a binary packet ends the session.
/// - The server pings every `pingInterval` and ends a session whose pong does not come within `pingTimeout`.
/// - Upgrade: on a polling session a WebSocket sends `2probe` (answered `3probe`, and the pending GET gets a
///   `noop` so polling stops), then `5`; from then on every packet, the queued ones first, goes over the
///   WebSocket, in order.
/// - Outbound packets wait in a bounded queue while no GET is pending; past the bound the session ends (a
///   slow consumer).
public struct EngineSession: Sendable {
    public struct Configuration: Sendable {
        public var pingIntervalMs: Int64
        public var pingTimeoutMs: Int64
        public var maxPayload: Int
        /// Most packets queued for a polling client before the session ends.
        public var maxQueuedPackets: Int

        public init(pingIntervalMs: Int64 = 25_000, pingTimeoutMs: Int64 = 20_000, maxPayload: Int = 1_000_000, maxQueuedPackets: Int = 10_000) {
            self.pingIntervalMs = pingIntervalMs
            self.pingTimeoutMs = pingTimeoutMs
            self.maxPayload = maxPayload
            self.maxQueuedPackets = maxQueuedPackets
        }
    }

    public enum Action: Sendable, Equatable {
        /// Answer the pending (or the current) poll GET with these packets.
        case answerPoll([EnginePacket])
        /// Write this packet on the session's WebSocket.
        case writeWebSocket(EnginePacket)
        /// Write this packet on the WebSocket that is probing an upgrade.
        case writeProbe(EnginePacket)
        /// The upgrade completed: the probing WebSocket is the session's transport from this action on (the
        /// packets that waited for a poll follow it, as ``writeWebSocket(_:)``, so none is lost between the two).
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
    /// Packets wait for the next poll.
    public var hasQueuedPackets: Bool { !queue.isEmpty }
    /// A probe was answered: the pending GET (or the next one) is answered with a `noop`.
    private var upgrading = false
    private var queue: [EnginePacket] = []
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
        transport == .polling ? [.answerPoll([openPacket])] : [.writeWebSocket(openPacket)]
    }

    // MARK: Long-polling

    /// A poll GET arrived: answered now when packets wait, else held.
    public mutating func poll() -> [Action] {
        guard !isClosed else { return [.refuse(.unknownSession)] }
        guard transport == .polling else { return [.refuse(.badRequest("the session moved to WebSocket"))] }
        guard !pollPending else { return end(.badRequest("a poll is already pending"), "overlapping polls") }
        if upgrading { return [.answerPoll([EnginePacket(.noop)])] }
        guard queue.isEmpty else { return takeQueue() }
        pollPending = true
        return []
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
            let waiting = queue
            queue = []
            return [.upgraded] + waiting.map { .writeWebSocket($0) }
        default:
            return end(nil, "unexpected packet while probing an upgrade")
        }
    }

    // MARK: Both transports

    /// The layer above sends a packet: written now on a WebSocket; queued for the next poll otherwise (call
    /// ``flush()`` when a batch of sends is done).
    public mutating func send(_ packet: EnginePacket) -> [Action] {
        guard !isClosed else { return [] }
        if transport == .websocket { return [.writeWebSocket(packet)] }
        guard queue.count < configuration.maxQueuedPackets else { return end(nil, "too many packets waiting for a poll") }
        queue.append(packet)
        return []
    }

    /// Answers a pending GET with what was sent since the last answer.
    public mutating func flush() -> [Action] {
        guard !isClosed, transport == .polling, pollPending, !queue.isEmpty else { return [] }
        pollPending = false
        return takeQueue()
    }

    /// The clock moved: a ping when one is due, the end of a session whose pong is late.
    public mutating func tick(now: Int64) -> [Action] {
        guard !isClosed else { return [] }
        if let deadline = pongDeadline, now >= deadline { return end(nil, "ping timeout") }
        guard pongDeadline == nil, now >= nextPingAt else { return [] }
        pongDeadline = now + configuration.pingTimeoutMs
        nextPingAt = now + configuration.pingIntervalMs
        return send(EnginePacket(.ping)) + flush()
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

    private mutating func takeQueue() -> [Action] {
        let packets = queue
        queue = []
        return [.answerPoll(packets)]
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
