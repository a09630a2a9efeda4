import HTTPTypes
import HummingbirdCore
import NIOCore
import SwitchboardCore

/// Engine.IO's HTTP long-polling transport on `/socket.io/` (SPEC §9): handshake GETs, held GETs and POSTs of
/// packets, answered before the router sees them (a held GET must not count against anything but its session).
/// Refusals are Engine.IO's `{"code":N,"message":"…"}`; polling requests from allowed origins get CORS headers.
struct EnginePolling: Sendable {
    let node: Node

    static let path = "/socket.io/"

    /// Whether `path` is Engine.IO's (with or without the trailing slash).
    static func handles(_ path: String) -> Bool {
        path == Self.path || path == "/socket.io"
    }

    func respond(to request: Request, writer: consuming ResponseWriter, channel: any Channel) async throws {
        let origin = request.headers[.origin]
        // Each polling request on a TCP connection of its own: NIO takes a WebSocket upgrade only as the first
        // request of a connection, and clients that pool connections (python-socketio's aiohttp) would send the
        // upgrade to Engine.IO's WebSocket on a connection that already carried a poll.
        var cors: HTTPFields = [.connection: "close"]
        if let origin, node.settings.allowedOrigins.isEmpty || node.settings.allowedOrigins.contains(origin) {
            cors[.accessControlAllowOrigin] = origin
            cors[.accessControlAllowCredentials] = "true"
        }
        if request.method == .options {
            cors[.accessControlAllowMethods] = "GET, POST, OPTIONS"
            cors[.accessControlAllowHeaders] = "Content-Type"
            return try await writer.writeResponse(HTTPResponse(status: .noContent, headerFields: cors))
        }
        let query = Dictionary(
            request.uri.queryParameters.map { (String($0.key), String($0.value)) }, uniquingKeysWith: { first, _ in first })
        let result: Result<ByteBuffer, EngineHTTPError>
        switch EngineRequest.classify(method: request.method.rawValue, query: query, isWebSocketUpgrade: false) {
        case .failure(let error):
            result = .failure(error)
        case .success(.handshake):
            result = await handshake(request, origin: origin, channel: channel)
        case .success(.poll(let sid)):
            if let refusal = screen(sid: sid, request, origin: origin, channel: channel) {
                result = .failure(refusal)
            } else {
                result = await poll(sid: sid, channel: channel)
            }
        case .success(.post(let sid)):
            if let refusal = screen(sid: sid, request, origin: origin, channel: channel) {
                result = .failure(refusal)
            } else {
                var request = request
                result = await post(sid: sid, request: &request)
            }
        case .success(.upgrade):
            result = .failure(.badRequest("transport=websocket takes a WebSocket upgrade"))
        }
        switch result {
        case .success(let body):
            var headers = cors
            headers[.contentType] = "text/plain; charset=UTF-8"
            headers[.contentLength] = "\(body.readableBytes)"
            headers[.cacheControl] = "no-store"
            var bodyWriter = try await writer.writeHead(HTTPResponse(status: .ok, headerFields: headers))
            try await bodyWriter.write(body)
            try await bodyWriter.finish(nil)
        case .failure(let error):
            var body = ByteBuffer()
            body.writeString(error.body)
            var headers = cors
            headers[.contentType] = "application/json"
            headers[.contentLength] = "\(body.readableBytes)"
            var bodyWriter = try await writer.writeHead(HTTPResponse(status: .init(code: error.status), headerFields: headers))
            try await bodyWriter.write(body)
            try await bodyWriter.finish(nil)
        }
    }

    private func handshake(_ request: Request, origin: String?, channel: any Channel) async -> Result<ByteBuffer, EngineHTTPError> {
        let admission = UpgradeAdmission(node: node)
        let ip = admission.clientIP(peer: channel.remoteAddress, forwardedFor: request.headers[values: .forwardedFor])
        let reservation: SlotReservation
        do throws(UpgradeRejection) {
            reservation = try admission.admitHandshake(ip: ip, origin: origin)
        } catch {
            return .failure(EngineHTTPError(rejection: error))
        }
        let loop = channel.eventLoop
        let forwarded = node.auth.hasConnectProxy ? UpgradeAdmission.forwardedHeaders(of: request.headers) : [:]
        let connection = EngineConnection(node: node, eventLoop: loop, reservation: reservation, transport: .polling, forwardedHeaders: forwarded)
        let packets = try? await loop.submit { connection.openPolling() }.get()
        return .success(Self.body(packets ?? []))
    }

    /// The block list and origin on a session's request (SPEC §9: on every way in): a refused request ends the
    /// session it names.
    private func screen(sid: String, _ request: Request, origin: String?, channel: any Channel) -> EngineHTTPError? {
        let admission = UpgradeAdmission(node: node)
        let ip = admission.clientIP(peer: channel.remoteAddress, forwardedFor: request.headers[values: .forwardedFor])
        do throws(UpgradeRejection) {
            try admission.screenSessionRequest(ip: ip, origin: origin)
            return nil
        } catch {
            if let connection = node.gateway.engineSessions.session(sid: sid) {
                connection.eventLoop.execute { connection.finish(reason: "refused: \(error.code)") }
            }
            return EngineHTTPError(rejection: error)
        }
    }

    private func poll(sid: String, channel: any Channel) async -> Result<ByteBuffer, EngineHTTPError> {
        guard let connection = node.gateway.engineSessions.session(sid: sid) else { return .failure(.unknownSession) }
        do {
            let packets = try await connection.eventLoop.flatSubmit {
                let answer = connection.poll()
                // A GET whose client went away (a proxy's idle timeout, a dropped connection) can no longer be
                // answered: the packets wait for the next one instead of going to a closed socket.
                channel.closeFuture.whenComplete { _ in connection.eventLoop.execute { connection.abandon(answer) } }
                return answer
            }.get()
            return .success(Self.body(packets))
        } catch {
            return .failure(error as? EngineHTTPError ?? .badRequest("poll failed"))
        }
    }

    private func post(sid: String, request: inout Request) async -> Result<ByteBuffer, EngineHTTPError> {
        guard let connection = node.gateway.engineSessions.session(sid: sid) else { return .failure(.unknownSession) }
        let maxPayload = node.settings.maxMessageBytes
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: maxPayload)
        } catch {
            // Too large (or cut off): the session ends, as Engine.IO's server ends it.
            connection.eventLoop.execute { connection.finish(reason: "POST body over maxPayload") }
            return .failure(EngineHTTPError(code: 3, message: "Bad request: payload over maxPayload \(maxPayload) bytes", status: 413))
        }
        do {
            try await connection.eventLoop.flatSubmit { connection.post(body) }.get()
            return .success(ByteBuffer(string: "ok"))
        } catch {
            return .failure(error as? EngineHTTPError ?? .badRequest("post failed"))
        }
    }

    private static func body(_ packets: [EnginePacket]) -> ByteBuffer {
        var buffer = ByteBuffer()
        EnginePayload.encode(packets, into: &buffer)
        return buffer
    }
}

extension EngineHTTPError {
    /// One of SPEC §3's refusals in Engine.IO's error body (code 4, "forbidden"), with its HTTP status.
    init(rejection: UpgradeRejection) {
        self.init(code: 4, message: "\(rejection.code): \(rejection.message)", status: Int(rejection.status.code))
    }
}
