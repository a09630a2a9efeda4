import Foundation
import HTTPTypes
import HummingbirdCore
import NIOCore
import NIOHTTP1
import SwitchboardCore

/// An upgrade that passed every check of SPEC §3, holding its reserved pool slot.
struct AdmittedUpgrade: Sendable {
    let identity: Identity
    let ip: String
    let reservation: SlotReservation
    /// `?batch=true`: the client accepts `batch` frames.
    let wantsBatches: Bool
}

/// An upgrade refused with an HTTP status and SPEC's JSON error body.
struct UpgradeRejection: Error, Sendable {
    let status: HTTPResponse.Status
    let code: ErrorCode
    let message: String

    /// The `result` label of the connection-attempt counter.
    var result: NodeStatistics.AttemptResult {
        switch code {
        case .ipBlocked: .ipBlocked
        case .originNotAllowed: .originNotAllowed
        case .rateLimited: .rateLimited
        case .unauthorized: .unauthorized
        case .connectionLimit: .connectionLimit
        default: .badRequest
        }
    }
}

/// The upgrade checks of SPEC §3, in their order: block list, origin, connect rate, token, pools.
struct UpgradeAdmission: Sendable {
    let node: Node

    /// The path WebSocket clients upgrade on.
    static let path = "/ws"

    func admit(_ head: HTTPRequestHead, peer: SocketAddress?) async throws(UpgradeRejection) -> AdmittedUpgrade {
        let ip = ClientAddress.resolve(
            peer: peer, forwardedFor: head.headers["X-Forwarded-For"].first, trustedProxies: node.settings.trustedProxies)
        do {
            let admitted = try await check(head, ip: ip)
            node.statistics.recordAttempt(.accepted)
            return admitted
        } catch {
            node.statistics.recordAttempt(error.result)
            switch error.result {
            case .rateLimited:
                node.statistics.recordRateLimited(.connectRate)
                node.audit.record(SecurityEvent(.rateLimited, ip: ip, detail: "connect rate: \(error.message)"))
            case .unauthorized:
                node.authenticationFailed(ip: ip, connectionId: nil, detail: "at upgrade: \(error.message)")
            case .connectionLimit:
                node.audit.record(SecurityEvent(.connectionLimit, ip: ip, detail: error.message))
            case .originNotAllowed:
                node.audit.record(SecurityEvent(.originRejected, ip: ip, detail: error.message))
            default:
                break
            }
            throw error
        }
    }

    private func check(_ head: HTTPRequestHead, ip: String) async throws(UpgradeRejection) -> AdmittedUpgrade {
        let target = URI(head.uri)
        guard target.path == Self.path else {
            throw UpgradeRejection(status: .notFound, code: .notFound, message: "no WebSocket endpoint at \(target.path); use \(Self.path)")
        }
        guard WebSocketHandshake.key(of: head) != nil else {
            throw UpgradeRejection(
                status: .badRequest, code: .badRequest,
                message: "invalid WebSocket handshake: send one 16-byte base64 Sec-WebSocket-Key and Sec-WebSocket-Version: 13")
        }
        let settings = node.settings
        guard !node.blockList.isBlocked(ip) else {
            throw UpgradeRejection(status: .forbidden, code: .ipBlocked, message: "this IP address is blocked")
        }
        if let origin = head.headers["Origin"].first, !settings.allowedOrigins.isEmpty, !settings.allowedOrigins.contains(origin) {
            throw UpgradeRejection(status: .forbidden, code: .originNotAllowed, message: "origin '\(origin.prefix(200))' is not allowed")
        }
        guard node.connectRateLimiter.allow(ip) else {
            throw UpgradeRejection(
                status: .tooManyRequests, code: .rateLimited,
                message: "too many connection attempts: at most \(settings.connectRatePerIP) per minute per IP")
        }
        var identity = Identity.anonymous
        if let token = Self.token(in: head, query: target.queryParameters) {
            do {
                identity = try await node.tokens.verify(token)
            } catch {
                throw UpgradeRejection(status: .unauthorized, code: .unauthorized, message: error.description)
            }
            node.statistics.recordAuth(succeeded: true)
        }
        do {
            try node.pools.reserve(ip: ip, userId: identity.userId)
        } catch {
            switch error {
            case .global:
                throw UpgradeRejection(status: .serviceUnavailable, code: .connectionLimit, message: "server is at its connection limit")
            case .perIP:
                throw UpgradeRejection(status: .tooManyRequests, code: .connectionLimit, message: "too many connections from this IP address")
            case .perUser:
                throw UpgradeRejection(status: .tooManyRequests, code: .connectionLimit, message: "too many connections for this user")
            }
        }
        return AdmittedUpgrade(
            identity: identity, ip: ip,
            reservation: SlotReservation(pools: node.pools, ip: ip, userId: identity.userId),
            wantsBatches: target.queryParameters["batch"] == "true")
    }

    /// `Authorization: Bearer T` or `?token=T` (SPEC §3 step 4).
    private static func token(in head: HTTPRequestHead, query: FlatDictionary<Substring, Substring>) -> String? {
        if let authorization = head.headers["Authorization"].first {
            let parts = authorization.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" { return String(parts[1]) }
        }
        return query["token"].flatMap { $0.isEmpty ? nil : String($0) }
    }
}

/// The client's IP address (SPEC §3): the TCP peer, or the nearest untrusted hop of `X-Forwarded-For`
/// when the peer is a trusted proxy.
enum ClientAddress {
    static func resolve(peer: SocketAddress?, forwardedFor: String?, trustedProxies: [String]) -> String {
        let peerIP = peer?.ipAddress ?? "unknown"
        guard let forwardedFor, trustedProxies.contains(peerIP) else { return peerIP }
        // Walk from the right: each trusted proxy vouches for the hop before it.
        let hops = forwardedFor.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        for hop in hops.reversed() where !trustedProxies.contains(hop) {
            return hop
        }
        return hops.first ?? peerIP
    }
}
