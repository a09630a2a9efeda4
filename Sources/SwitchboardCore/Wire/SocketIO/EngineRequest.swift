/// An HTTP request on `/socket.io/` as Engine.IO 4 sees it (SPEC §9): a handshake, a poll, a POST of packets
/// or a WebSocket upgrade, told apart by method and query, or refused with Engine.IO's error.
public enum EngineRequest: Sendable, Equatable {
    /// A new session: `EIO=4&transport=polling` (GET) or `transport=websocket` without a `sid` (an upgrade).
    case handshake(EngineTransport)
    /// `GET ...&transport=polling&sid=S`: wait for the session's packets.
    case poll(sid: String)
    /// `POST ...&transport=polling&sid=S`: packets from the client.
    case post(sid: String)
    /// `GET ...&transport=websocket&sid=S` (an upgrade request): move a polling session to WebSocket.
    case upgrade(sid: String)

    /// Classifies a request from its method and query parameters.
    /// - Parameter isWebSocketUpgrade: the request asks for `Upgrade: websocket`.
    public static func classify(
        method: String, query: [String: String], isWebSocketUpgrade: Bool
    ) -> Result<EngineRequest, EngineHTTPError> {
        guard query["EIO"] == "4" else {
            return .failure(query["EIO"] == nil ? .badRequest("EIO is required") : .unsupportedProtocolVersion)
        }
        guard let transport = query["transport"].flatMap(EngineTransport.init(rawValue:)) else { return .failure(.unknownTransport) }
        let sid = query["sid"].flatMap { $0.isEmpty ? nil : $0 }
        switch (transport, sid, method) {
        case (.polling, nil, "GET"): return .success(.handshake(.polling))
        case (.polling, nil, _): return .failure(.badHandshakeMethod)
        case (.polling, let sid?, "GET"): return .success(.poll(sid: sid))
        case (.polling, let sid?, "POST"): return .success(.post(sid: sid))
        case (.polling, _?, _): return .failure(.badRequest("polling takes GET and POST"))
        case (.websocket, _, _) where method != "GET" || !isWebSocketUpgrade:
            return .failure(.badRequest("transport=websocket takes a WebSocket upgrade"))
        case (.websocket, nil, _): return .success(.handshake(.websocket))
        case (.websocket, let sid?, _): return .success(.upgrade(sid: sid))
        }
    }
}

public enum EngineTransport: String, Sendable, Equatable {
    case polling
    case websocket
}

/// Engine.IO's refusal of an HTTP request: 400 with `{"code":N,"message":"..."}` (403 for a refused
/// handshake), the codes the reference server uses.
public struct EngineHTTPError: Error, Sendable, Equatable {
    public let code: Int
    public let message: String
    public let status: Int

    public init(code: Int, message: String, status: Int) {
        self.code = code
        self.message = message
        self.status = status
    }

    public static let unknownTransport = EngineHTTPError(code: 0, message: "Transport unknown", status: 400)
    public static let unknownSession = EngineHTTPError(code: 1, message: "Session ID unknown", status: 400)
    public static let badHandshakeMethod = EngineHTTPError(code: 2, message: "Bad handshake method", status: 400)
    public static let unsupportedProtocolVersion = EngineHTTPError(code: 5, message: "Unsupported protocol version", status: 400)

    public static func badRequest(_ message: String) -> EngineHTTPError {
        EngineHTTPError(code: 3, message: "Bad request: \(message)", status: 400)
    }

    /// A handshake refused by SPEC §3's checks (blocked IP, origin, connect rate, pools).
    public static func forbidden(_ message: String) -> EngineHTTPError {
        EngineHTTPError(code: 4, message: message, status: 403)
    }

    /// The JSON body.
    public var body: String {
        JSONValue.object(["code": .int(Int64(code)), "message": .string(message)]).jsonText
    }
}
