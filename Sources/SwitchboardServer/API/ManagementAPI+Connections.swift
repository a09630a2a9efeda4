import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Prometheus
import SwitchboardCore

/// The connection endpoints of SPEC §6: a user's connections, and disconnects by connection, user and IP.
extension ManagementAPI {
    func connections(_ request: Request, _ context: APIContext) async throws -> Response {
        let userId = try Self.pathParameter("userId", of: context)
        guard let identity = try await self.identity(of: request, context) else { throw APIError.unauthorized("missing Authorization: Bearer <token>") }
        guard identity.role.isAdmin || identity.userId == userId else {
            throw APIError.forbidden("only admins and the user '\(userId)' may list these connections")
        }
        var descriptions: [ConnectionDescription] = []
        for connection in node.connections.connections(ofUser: userId) {
            // A connection closing meanwhile is simply left out.
            if let description = try? await connection.describe() { descriptions.append(description) }
        }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return Self.json(.object([
            "userId": .string(userId),
            "connections": .array(descriptions.sorted { $0.connectedAt < $1.connectedAt }.map { description in
                .object([
                    "id": .string(description.id), "transport": .string(description.transport), "ip": .string(description.ip),
                    "role": .string(description.role.rawValue),
                    "connectedAt": .string(formatter.string(from: description.connectedAt)),
                    "channels": .array(description.channels.map(JSONValue.string)),
                    "messagesIn": .int(Int64(description.messagesIn)), "messagesOut": .int(Int64(description.messagesOut)),
                ])
            }),
        ]))
    }

    static let defaultDisconnectReason = "disconnected by an administrator"

    func disconnect(_ request: Request, _ context: APIContext) async throws -> Response {
        let admin = try await requireAdmin(request, context)
        let id = try Self.pathParameter("connectionId", of: context)
        let reason = try await Self.reason(in: request)
        var closed = 0
        if let connection = node.connections.connection(id: id) {
            closed = node.gatekeeper.disconnectByAdmin([connection], target: "connection \(id)", by: Self.name(of: admin), reason: reason)
        } else if let cluster = node.cluster {
            // SPEC §8: the connection may be on another node; 404 only when no node has it.
            guard cluster.linkStatus.isUp else {
                throw APIError(
                    status: .serviceUnavailable, code: .internalError,
                    message: "no connection '\(id)' on this node, and Redis is not reachable to ask the others")
            }
            closed = await performed(.disconnectConnection(id: id, reason: reason), in: cluster)
        }
        guard closed > 0 else { throw APIError.notFound("no open connection '\(id)'") }
        return Self.json(.object(["disconnected": .int(1)]))
    }

    static func name(of admin: Identity) -> String { admin.userId ?? "?" }

    /// A path parameter, percent-decoded (the router hands it on as sent: the dashboard encodes an IPv6
    /// address's `:` as `%3A`).
    static func pathParameter(_ name: String, of context: APIContext) throws -> String {
        let raw = try context.parameters.require(name)
        guard let decoded = raw.removingPercentEncoding, !decoded.isEmpty else {
            throw APIError.badRequest("\(name): '\(raw)' is not validly percent-encoded")
        }
        return decoded
    }

    /// How many connections the other nodes closed for `command`; 0 when Redis is out of reach (then the
    /// command applied on this node only, and the log says so).
    func performed(_ command: ClusterCommand, in cluster: any Cluster) async -> Int {
        do {
            return try await cluster.perform(command)
        } catch {
            node.logger.warning("cluster command reached this node only", metadata: ["sb.error": "\(error)"])
            return 0
        }
    }

    func disconnectUser(_ request: Request, _ context: APIContext) async throws -> Response {
        let admin = try await requireAdmin(request, context)
        let userId = try Self.pathParameter("userId", of: context)
        let reason = try await Self.reason(in: request)
        var closed = node.gatekeeper.disconnectByAdmin(
            node.connections.connections(ofUser: userId), target: "user \(userId)", by: Self.name(of: admin), reason: reason)
        if let cluster = node.cluster { closed += await performed(.disconnectUser(id: userId, reason: reason), in: cluster) }
        return Self.json(.object(["disconnected": .int(Int64(closed))]))
    }

    func disconnectIP(_ request: Request, _ context: APIContext) async throws -> Response {
        let admin = try await requireAdmin(request, context)
        let given = try Self.pathParameter("ip", of: context)
        // Normalised as every per-IP rule keys it: `2001:DB8::1` and `2001:db8:0::1` are one address, an IPv6
        // client is its `ipv6-prefix-length` prefix, and an IPv4-mapped address is the IPv4 one.
        guard let ip = node.gatekeeper.addresses.key(ofAdminInput: given) else { throw APIError.badRequest("ip: '\(given)' is not an IP address") }
        let body = try await Self.optionalJSONBody(of: request)
        let reason = try Self.reason(in: body)
        var blockSeconds: Int64?
        switch body?["blockSeconds"] {
        case nil: blockSeconds = nil
        case .int(let seconds)? where seconds > 0 && seconds <= 365 * 86_400: blockSeconds = seconds
        default: throw APIError.badRequest("blockSeconds: a whole number of seconds, 1 to 31536000")
        }
        var closed = node.gatekeeper.disconnectByAdmin(
            node.connections.all.filter { $0.ip == ip }, target: "ip \(ip)", by: Self.name(of: admin), reason: reason)
        // The other nodes close the IP's connections as an admin's disconnect (4000) before the block reaches
        // them (commands arrive in the order sent), so the block finds nothing of the IP left to close with 1008.
        if let cluster = node.cluster { closed += await performed(.disconnectIP(ip, reason: reason), in: cluster) }
        if let blockSeconds {
            closed += await node.gatekeeper.block(ip, for: .seconds(blockSeconds), reason: "by \(Self.name(of: admin)): \(reason)")
        }
        var result: [String: JSONValue] = ["disconnected": .int(Int64(closed))]
        if let blockSeconds { result["blockedSeconds"] = .int(blockSeconds) }
        return Self.json(.object(result))
    }

    static func reason(in request: Request) async throws -> String {
        try reason(in: try await optionalJSONBody(of: request))
    }

    static func reason(in body: JSONValue?) throws -> String {
        guard body == nil || body?.isObject == true else { throw APIError.badRequest("body: must be a JSON object") }
        switch body?["reason"] {
        case nil: return defaultDisconnectReason
        case .string(let reason)? where reason.utf8.count <= 120: return reason
        default: throw APIError.badRequest("reason: a string of at most 120 bytes")
        }
    }
}
