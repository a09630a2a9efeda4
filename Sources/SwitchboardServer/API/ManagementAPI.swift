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
        api.post("broadcast") { request, _ in try await self.broadcast(request) }
        api.post("broadcast/batch") { request, _ in try await self.broadcastBatch(request) }
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

    private func broadcast(_ request: Request) async throws -> Response {
        try await requireAdmin(request)
        let body = try await Self.jsonBody(of: request)
        let broadcast: BroadcastRequest
        do {
            broadcast = try BroadcastRequest(body, directory: node.hub.directory)
        } catch {
            throw APIError(status: .badRequest, code: error.code, message: error.message)
        }
        return Self.json(try send(broadcast))
    }

    /// SPEC §6: up to 1000 messages, validated as a whole first; one bad item rejects the batch, listing every bad index.
    private func broadcastBatch(_ request: Request) async throws -> Response {
        try await requireAdmin(request)
        guard case .array(let items)? = try await Self.jsonBody(of: request)["messages"] else {
            throw APIError.badRequest("messages: required, an array of broadcast bodies")
        }
        guard (1...BroadcastRequest.maxBatch).contains(items.count) else {
            throw APIError.badRequest("messages: between 1 and \(BroadcastRequest.maxBatch) items, got \(items.count)")
        }
        var broadcasts: [BroadcastRequest] = []
        var problems: [ErrorBody.Detail] = []
        for (index, item) in items.enumerated() {
            do {
                broadcasts.append(try BroadcastRequest(item, directory: node.hub.directory))
            } catch {
                problems.append(ErrorBody.Detail(index: index, message: error.message))
            }
        }
        guard problems.isEmpty else {
            throw APIError.badRequest("\(problems.count) of \(items.count) messages are invalid; nothing was sent", details: problems)
        }
        let results = try broadcasts.map(send)
        return Self.json(.object(["published": .int(Int64(results.count)), "results": .array(results)]))
    }

    /// Publishes one validated broadcast and describes the result as SPEC's `{"channel","seq","recipients"}`.
    private func send(_ broadcast: BroadcastRequest) throws -> JSONValue {
        let result: Hub.PublishResult
        do {
            result = try node.publish(broadcast.publication, to: broadcast.target)
        } catch {
            // Validation resolved the channel already; only a namespace table without `user` gets here.
            throw APIError(status: .badRequest, code: error.code, message: error.message)
        }
        let channel: JSONValue = switch broadcast.target {
        case .channel(let name): .string(name)
        case .user(let userId): .string("user:\(userId)")
        case .all: .null
        }
        var fields: [String: JSONValue] = [
            "channel": channel, "seq": result.seq.map { .int(Int64($0)) } ?? .null, "recipients": .int(Int64(result.recipients)),
        ]
        if result.held { fields["held"] = .bool(true) }
        return .object(fields)
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
