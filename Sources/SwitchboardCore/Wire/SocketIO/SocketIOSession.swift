/// The Socket.IO 5 side of one session as a pure state machine (SPEC §9), above an ``EngineSession``: it
/// takes the data of Engine.IO message packets and returns what to do. Only the main namespace `/` exists.
///
/// - Until a CONNECT to `/` arrives (within the connect timeout) nothing else is accepted; a CONNECT to
///   another namespace gets CONNECT_ERROR "Invalid namespace" and the session stays as it was.
/// - The CONNECT's `auth: {token}` goes to the node's upgrade checks (``Action/authenticate(token:)``), which
///   answer with ``accepted(sid:)`` or ``refused(code:message:)`` (CONNECT_ERROR, then the end: the client
///   does not reconnect).
/// - Events become the protocol's requests (``ClientRequest``), their ack id as the request id; replies go
///   back as ACKs (``ack(_:_:)``).
public struct SocketIOSession: Sendable {
    public enum Action: Sendable, Equatable {
        /// Run SPEC §3's checks for this token (nil: anonymous, or the platform's connect proxy decides with the
        /// CONNECT's auth object as `data`, SPEC §14), then call ``accepted(sid:)`` or ``refused(code:message:)``.
        case authenticate(token: String?, data: JSONValue? = nil)
        /// A request to carry out, or the refusal of an event that is none (answered through its ack when it
        /// has one); its `id` is the event's ack id, when it asked for one.
        case request(Result<ClientRequest, ClientRequestError>)
        /// A packet that asks for nothing (an ack, another namespace's packet, a second CONNECT, an event
        /// without an ack that is no request): it still counts toward the message rate (SPEC §7).
        case unanswered
        /// Send this packet (as the data of an Engine.IO message packet).
        case send(SocketPacket)
        /// End the session; `reason` for logs.
        case close(reason: String)
    }

    private enum Phase: Sendable {
        case awaitingConnect(deadline: Int64)
        /// The CONNECT is being checked; packets that arrive meanwhile (a client that does not wait for the
        /// answer) are kept, in order, and handled once it is accepted.
        case authenticating(pending: [[UInt8]])
        case connected
        case closed
    }

    private var phase: Phase

    /// Most packets kept while a CONNECT is checked; more ends the session.
    public static let maxPendingPackets = 16

    /// - Parameters:
    ///   - now: milliseconds on a monotonic clock.
    ///   - connectTimeoutMs: how long the client has to send its CONNECT (the reference server's default 45 s).
    public init(now: Int64, connectTimeoutMs: Int64 = 45_000) {
        phase = .awaitingConnect(deadline: now + connectTimeoutMs)
    }

    public var isConnected: Bool {
        if case .connected = phase { return true }
        return false
    }

    /// The data of one Engine.IO message packet.
    public mutating func received(_ data: [UInt8]) -> [Action] {
        if case .closed = phase { return [] }
        if case .authenticating(var pending) = phase {
            guard pending.count < Self.maxPendingPackets else { return close("too many packets while CONNECT was checked") }
            pending.append(data)
            phase = .authenticating(pending: pending)
            return []
        }
        let packet: SocketPacket
        do {
            packet = try SocketPacket.decode(data)
        } catch {
            return close("bad packet: \(error.description)")
        }
        switch (phase, packet.kind) {
        case (.awaitingConnect, .connect) where packet.namespace != "/":
            return [.send(SocketPacket(.connectError, namespace: packet.namespace, payload: .object(["message": .string("Invalid namespace")])))]
        case (.awaitingConnect, .connect):
            phase = .authenticating(pending: [])
            guard case .string(let token)? = packet.payload?["token"] else { return [.authenticate(token: nil, data: packet.payload)] }
            return [.authenticate(token: token)]
        case (.awaitingConnect, _):
            return close("packet before the session was connected")
        case (.authenticating, _):
            return []  // kept above
        case (.connected, .event) where packet.namespace == "/":
            guard let (name, arguments) = packet.event else { return [.unanswered] }
            do {
                return [.request(.success(try ClientRequest(socketIOEvent: name, arguments: arguments, ackId: packet.ackId)))]
            } catch {
                // Answered like a native BAD_REQUEST, through the ack when there is one.
                return [packet.ackId == nil ? .unanswered : .request(.failure(error))]
            }
        case (.connected, .disconnect):
            return close("the client disconnected")
        case (.connected, _):
            // Other namespaces do not exist; acks answer nothing the server asked; a second CONNECT changes nothing.
            return [.unanswered]
        case (.closed, _):
            return []
        }
    }

    /// The node admitted the session: CONNECT is answered with its id.
    public mutating func accepted(sid: String) -> [Action] {
        guard case .authenticating(let pending) = phase else { return [] }
        phase = .connected
        var actions: [Action] = [.send(SocketPacket(.connect, payload: .object(["sid": .string(sid)])))]
        for data in pending { actions += received(data) }
        return actions
    }

    /// The node refused the session (SPEC §3): CONNECT_ERROR with the error code in `data`, then the end.
    public mutating func refused(code: String, message: String) -> [Action] {
        guard case .authenticating = phase else { return [] }
        phase = .closed
        return [
            .send(SocketPacket(.connectError, payload: .object(["message": .string(message), "data": .object(["code": .string(code)])]))),
            .close(reason: "connect refused: \(code)"),
        ]
    }

    /// The server ends the session (an admin disconnect, a block): DISCONNECT, so the client does not reconnect.
    public mutating func disconnect(reason: String) -> [Action] {
        if case .closed = phase { return [] }
        let wasConnected = isConnected
        phase = .closed
        return (wasConnected ? [.send(SocketPacket(.disconnect))] : []) + [.close(reason: reason)]
    }

    /// The connect timeout.
    public mutating func tick(now: Int64) -> [Action] {
        guard case .awaitingConnect(let deadline) = phase, now >= deadline else { return [] }
        return close("no CONNECT in time")
    }

    /// An ACK answering event `id` with `value`.
    public static func ack(_ id: UInt64, _ value: JSONValue) -> SocketPacket {
        SocketPacket(.ack, ackId: id, payload: .array([value]))
    }

    private mutating func close(_ reason: String) -> [Action] {
        phase = .closed
        return [.close(reason: reason)]
    }
}

extension ClientRequest {
    /// A Socket.IO event as the protocol's request (SPEC §9): `subscribe` with a channel name or
    /// `{channel, since}`, `unsubscribe` with a channel name or `{channel}`, `auth` with a token or `{token}`,
    /// `publish` with `{channel, event, data, key?}`, `ping`.
    public init(socketIOEvent name: String, arguments: [JSONValue], ackId: UInt64?) throws(ClientRequestError) {
        let id = ackId.map { RequestID.int(Int64($0)) }
        func fail(_ message: String) -> ClientRequestError { ClientRequestError(id: id, message: message) }
        let argument = arguments.first
        func string(_ field: String) throws(ClientRequestError) -> String {
            if case .string(let value)? = argument { return value }
            guard case .string(let value)? = argument?[field] else { throw fail("'\(name)' takes a \(field) string or {\"\(field)\": ...}") }
            return value
        }
        switch name {
        case "subscribe":
            var since: UInt64?
            switch argument?["since"] {
            case nil, .null?: since = nil
            case .int(let value)? where value >= 0: since = UInt64(value)
            default: throw fail("'since' must be a sequence number")
            }
            var epoch: String?
            switch argument?["epoch"] {
            case nil, .null?: epoch = nil
            case .string(let value)?: epoch = value
            default: throw fail("'epoch' must be a string")
            }
            self.init(id: id, command: .subscribe(channel: try string("channel"), since: since, epoch: epoch))
        case "unsubscribe":
            self.init(id: id, command: .unsubscribe(channel: try string("channel")))
        case "auth":
            if argument?["token"] == nil, let data = argument?["data"], data.isObject {
                self.init(id: id, command: .authWithData(data))
            } else {
                self.init(id: id, command: .auth(token: try string("token")))
            }
        case "publish":
            guard case .string(let channel)? = argument?["channel"], case .string(let event)? = argument?["event"],
                let data = argument?["data"]
            else { throw fail("'publish' takes {\"channel\", \"event\", \"data\", \"key\"?}") }
            if let refusal = Publication.refusal(ofEvent: event) { throw fail(refusal) }
            var key: String?
            switch argument?["key"] {
            case nil, .null?: key = nil
            case .string(let value)?: key = value
            default: throw fail("'key' must be a string")
            }
            self.init(id: id, command: .publish(channel: channel, event: event, data: data.jsonText, key: key))
        case "ping":
            self.init(id: id, command: .ping)
        default:
            throw fail("unknown event '\(name.prefix(64))': use subscribe, unsubscribe, auth, publish or ping")
        }
    }
}
