import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SwitchboardCore

/// The HTTP management API of SPEC §6 (this part: health and broadcast).
struct ManagementAPI: Sendable {
    let node: Node

    /// Largest API request body accepted.
    static let maxBodyBytes = 4 * 1_048_576

    func register(on router: Router<BasicRequestContext>) {
        router.add(middleware: JSONErrorMiddleware())
        let api = router.group("api/v1/websocket")
        api.get("health") { _, _ in try self.health() }
        api.post("broadcast") { request, context in try await self.broadcast(request, context: context) }
        router.get(RouterPath(UpgradeAdmission.path)) { _, _ -> Response in
            throw APIError.badRequest(
                "\(UpgradeAdmission.path) is a WebSocket endpoint: send an upgrade request (Upgrade: websocket, Sec-WebSocket-Version: 13)")
        }
    }

    // MARK: Handlers

    private func health() throws -> Response {
        let body: JSONValue = .object([
            "status": .string("ok"),
            "checks": .object(["eventLoops": .string("ok")]),
            "uptimeSeconds": .int(Int64(node.uptimeSeconds)),
            "nodeId": .string(node.settings.nodeId),
        ])
        return Self.json(body)
    }

    private func broadcast(_ request: Request, context: BasicRequestContext) async throws -> Response {
        try await requireAdmin(request)
        let body = try await Self.jsonBody(of: request)
        let publication = try BroadcastRequest(body).publication()
        let result: Hub.PublishResult
        do {
            result = try node.publish(publication)
        } catch {
            switch error.reason {
            case .badName: throw APIError.badRequest("channel: \(error.message)")
            case .unknownNamespace: throw APIError(status: .badRequest, code: .unknownChannel, message: error.message)
            case .forbidden: throw APIError.forbidden(error.message)
            }
        }
        return Self.json(.object([
            "channel": .string(publication.channel), "seq": .int(Int64(result.seq)), "recipients": .int(Int64(result.recipients)),
        ]))
    }

    // MARK: Auth and bodies

    /// SPEC §6: missing or invalid token -> 401, a role below admin -> 403.
    @discardableResult
    private func requireAdmin(_ request: Request) async throws -> Identity {
        guard node.tokens.isConfigured else { throw APIError.unauthorized(TokenVerifier.notConfiguredMessage) }
        guard let authorization = request.headers[.authorization],
            authorization.lowercased().hasPrefix("bearer ")
        else {
            throw APIError.unauthorized("missing Authorization: Bearer <token>")
        }
        let identity: Identity
        do {
            identity = try await node.tokens.verify(String(authorization.dropFirst("bearer ".count)))
        } catch {
            throw APIError.unauthorized(error.description)
        }
        guard identity.role.isAdmin else { throw APIError.forbidden("this endpoint needs role admin or super_admin") }
        return identity
    }

    static func jsonBody(of request: Request) async throws -> JSONValue {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: maxBodyBytes)
        } catch {
            throw APIError(status: .contentTooLarge, code: .badRequest, message: "body larger than \(maxBodyBytes) bytes")
        }
        do {
            return try JSONValue.parse(buffer.readableBytesView)
        } catch {
            throw APIError.badRequest("body: \(error.message)")
        }
    }

    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        let buffer = ByteBuffer(string: value.jsonText)
        return Response(
            status: status, headers: [.contentType: "application/json", .contentLength: "\(buffer.readableBytes)"],
            body: .init(byteBuffer: buffer))
    }
}

/// A `POST /api/v1/websocket/broadcast` body: `event`, `data`, optional `key`, and one target.
struct BroadcastRequest {
    let body: JSONValue

    init(_ body: JSONValue) { self.body = body }

    /// Validates the body; errors name the field (SPEC §6).
    func publication() throws(APIError) -> Publication {
        guard case .object(let fields) = body else { throw .badRequest("body must be a JSON object") }
        guard case .string(let event)? = fields["event"], !event.isEmpty else {
            throw .badRequest("event: required, a non-empty string")
        }
        guard let data = fields["data"] else { throw .badRequest("data: required") }
        let key: String?
        switch fields["key"] {
        case nil, .null?: key = nil
        case .string(let value)?: key = value
        default: throw .badRequest("key: must be a string")
        }
        let targets = ["channel", "userId", "all"].filter { fields[$0] != nil && fields[$0] != .null && fields[$0] != .bool(false) }
        guard targets.count == 1 else {
            throw .badRequest("exactly one target is required: channel, userId or all: true")
        }
        guard case .string(let channel)? = fields["channel"] else {
            // userId and all targets are delivered by the broadcast service (issue 3), not yet by this node.
            throw .badRequest("\(targets[0]): only the channel target is supported by this version")
        }
        return Publication(channel: channel, event: event, data: data.jsonText, key: key)
    }
}
