import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP1
import SwitchboardCore

/// SPEC §14's connect proxy in admission: who a client without a token is, asked of the platform's backend after the
/// block list, the origin and the connect rate, and before the pools.
extension UpgradeAdmission {
    /// The identity a checked request comes with: its token's, the connect proxy's for one without a token, or
    /// anonymous.
    func resolveIdentity(of request: CheckedRequest, on loop: any EventLoop) -> EventLoopFuture<Identity> {
        if let token = request.token {
            return node.auth.tokens.rememberedIdentity(of: token).map { loop.makeSucceededFuture($0) } ?? verifying(token, on: loop)
        }
        guard node.auth.hasConnectProxy else { return loop.makeSucceededFuture(.anonymous) }
        return askingConnectProxy(transport: "websocket", ip: request.ip, headers: request.forwardedHeaders, data: nil, on: loop)
    }

    /// The connect proxy's identity for a client without a token (SPEC §14): a refusal is `UNAUTHORIZED` (counted
    /// toward the IP's block, as a bad token is), no answer in time `UNAVAILABLE` (not counted).
    func askingConnectProxy(
        transport: String, ip: String, headers: [String: String], data: JSONValue?, on loop: any EventLoop
    ) -> EventLoopFuture<Identity> {
        guard let backend = node.auth.backend else { return loop.makeSucceededFuture(.anonymous) }
        return loop.makeFutureWithTask { () async throws -> Identity in
            switch await backend.connect(transport: transport, ip: ip, headers: headers, data: data) {
            case .identity(let identity):
                return identity
            case .refused(let reason):
                throw UpgradeRejection(status: .unauthorized, code: .unauthorized, message: reason)
            case .unavailable(let reason):
                throw UpgradeRejection(status: .serviceUnavailable, code: .unavailable, message: reason)
            }
        }
    }

    /// The headers the connect proxy receives (SPEC §14), each at most 8 KiB.
    static func forwardedHeaders(of headers: HTTPHeaders) -> [String: String] {
        var forwarded: [String: String] = [:]
        for name in PlatformBackend.forwardedHeaders {
            if let value = headers[name].first, value.utf8.count <= 8_192 { forwarded[name] = value }
        }
        return forwarded
    }

    /// The same, of a request Hummingbird parsed (a Socket.IO polling handshake).
    static func forwardedHeaders(of fields: HTTPFields) -> [String: String] {
        var forwarded: [String: String] = [:]
        for name in PlatformBackend.forwardedHeaders {
            if let field = HTTPField.Name(name), let value = fields[field], value.utf8.count <= 8_192 { forwarded[name] = value }
        }
        return forwarded
    }
}
