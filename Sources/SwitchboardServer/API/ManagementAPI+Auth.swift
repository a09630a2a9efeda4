import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Prometheus
import SwitchboardCore

/// Who calls the API (bearer tokens, SPEC §6, §7) and the JSON bodies it reads and writes.
extension ManagementAPI {
    static func bearerToken(of request: Request) -> String? {
        guard let authorization = request.headers[.authorization] else { return nil }
        let parts = authorization.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        return String(parts[1])
    }

    /// The caller's identity; nil without an `Authorization` header; 401 when the token is invalid.
    ///
    /// SPEC §7 holds here as on upgrades: a blocked IP is refused (403 `IP_BLOCKED`) before its token is
    /// looked at, and each invalid token counts toward blocking its IP, so junk bearer tokens cost at most
    /// `block-after-failures` signature checks per IP per block.
    func identity(of request: Request, _ context: APIContext) async throws -> Identity? {
        guard request.headers[.authorization] != nil else { return nil }
        guard node.auth.tokens.isConfigured else { throw APIError.unauthorized(TokenVerifier.notConfiguredMessage) }
        let ip = node.gatekeeper.addresses.clientKey(peer: context.remoteAddress, forwardedFor: request.headers[values: .forwardedFor])
        guard !node.gatekeeper.blockList.isBlocked(ip) else {
            throw APIError(status: .forbidden, code: .ipBlocked, message: "this IP address is blocked")
        }
        guard let token = Self.bearerToken(of: request) else {
            node.gatekeeper.authenticationFailed(ip: ip, connectionId: nil, detail: "admin API: Authorization is not Bearer <token>")
            throw APIError.unauthorized("Authorization must be: Bearer <token>")
        }
        do {
            return try await node.auth.tokens.verify(token)
        } catch {
            node.gatekeeper.authenticationFailed(ip: ip, connectionId: nil, detail: "admin API: \(error.description)")
            throw APIError.unauthorized(error.description)
        }
    }

    /// SPEC §6: missing or invalid token -> 401, a role below admin -> 403.
    @discardableResult
    func requireAdmin(_ request: Request, _ context: APIContext) async throws -> Identity {
        guard node.auth.tokens.isConfigured else { throw APIError.unauthorized(TokenVerifier.notConfiguredMessage) }
        guard let identity = try await identity(of: request, context) else {
            throw APIError.unauthorized("missing Authorization: Bearer <token>")
        }
        guard identity.role.isAdmin else { throw APIError.forbidden("this endpoint needs role admin or super_admin") }
        return identity
    }

    static func jsonBody(of request: Request) async throws -> JSONValue {
        guard let body = try await optionalJSONBody(of: request) else { throw APIError.badRequest("body: required, a JSON object") }
        return body
    }

    /// The JSON body, or nil when the body is empty.
    static func optionalJSONBody(of request: Request) async throws -> JSONValue? {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: maxBodyBytes)
        } catch {
            throw APIError(status: .contentTooLarge, code: .badRequest, message: "body: larger than \(maxBodyBytes) bytes")
        }
        guard buffer.readableBytes > 0 else { return nil }
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

/// Comparison that takes the same time wherever the strings differ (for secrets such as the metrics token).
enum ConstantTime {
    static func equal(_ lhs: String, _ rhs: String) -> Bool {
        let left = Array(lhs.utf8)
        let right = Array(rhs.utf8)
        var difference = UInt8(left.count == right.count ? 0 : 1)
        for index in 0..<max(left.count, right.count) {
            difference |= (index < left.count ? left[index] : 0) ^ (index < right.count ? right[index] : 0)
        }
        return difference == 0
    }
}
