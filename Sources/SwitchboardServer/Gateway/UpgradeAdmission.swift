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
    /// `?subscribe=a,b`: channels to subscribe to as soon as the connection is open, as if the client had sent
    /// a `subscribe` for each (one round trip for a reconnecting client instead of two).
    let subscriptions: [String]
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
        case .unavailable: .unavailable
        default: .badRequest
        }
    }
}

extension UpgradeRejection {
    /// `error` as the refusal it is, or a 500 `INTERNAL_ERROR` for any other failure.
    init(_ error: any Error) {
        self = error as? UpgradeRejection ?? UpgradeRejection(status: .internalServerError, code: .internalError, message: "upgrade failed")
    }
}

/// The upgrade checks of SPEC §3, in their order: block list, origin, connect rate, token, pools.
struct UpgradeAdmission: Sendable {
    let node: Node

    /// The path WebSocket clients upgrade on.
    static let path = "/ws"

    /// The outcome of the checks: decided at once, or waiting for a token's first verification or, in
    /// cluster mode, for the user's cluster-wide pool. Either way it is counted and recorded.
    enum Outcome {
        case decided(Result<AdmittedUpgrade, UpgradeRejection>)
        case pending(EventLoopFuture<AdmittedUpgrade>)

        /// The outcome as a future on `loop` (for callers that take one either way).
        func future(on loop: any EventLoop) -> EventLoopFuture<AdmittedUpgrade> {
            switch self {
            case .decided(.success(let upgrade)): loop.makeSucceededFuture(upgrade)
            case .decided(.failure(let rejection)): loop.makeFailedFuture(rejection)
            case .pending(let future): future
            }
        }
    }

    /// Runs the checks for an upgrade request on `loop`. Without a token, or with one verified lately, on a
    /// single node, every check is synchronous and the outcome is decided here: a reconnect storm of such
    /// clients creates no future or task and crosses no thread.
    func admit(_ head: HTTPRequestHead, peer: SocketAddress?, on loop: any EventLoop) -> Outcome {
        let ip = clientIP(peer: peer, forwardedFor: head.headers["X-Forwarded-For"])
        do {
            return admit(try check(head, ip: ip), on: loop)
        } catch {
            record(error, ip: ip)
            return .decided(.failure(error))
        }
    }

    /// The client's IP address (SPEC §3), from the TCP peer and a trusted proxy's `X-Forwarded-For`.
    func clientIP(peer: SocketAddress?, forwardedFor: [String]) -> String {
        node.gatekeeper.addresses.clientKey(peer: peer, forwardedFor: forwardedFor)
    }

    /// A Socket.IO handshake (SPEC §9): the checks before the token (block list, origin, connect rate), then an
    /// anonymous slot in the global and per-IP pools, so that sessions which never CONNECT are bounded and
    /// counted like connections. Refusals are counted and recorded like an upgrade's. The token comes later, in
    /// CONNECT (``admitConnect(_:token:on:)``).
    func admitHandshake(ip: String, origin: String?) throws(UpgradeRejection) -> SlotReservation {
        do {
            try screen(ip: ip, origin: origin)
            return try reserve(CheckedRequest(ip: ip, token: nil, wantsBatches: false, subscriptions: []), for: .anonymous).reservation
        } catch {
            record(error, ip: ip)
            throw error
        }
    }

    /// A request that belongs to an open Engine.IO session (a poll, a POST, the upgrade by `sid`): the block list
    /// and the origin apply on every way in (SPEC §9), the connect rate does not (it is the same session).
    func screenSessionRequest(ip: String, origin: String?) throws(UpgradeRejection) {
        do {
            try screenBlockAndOrigin(ip: ip, origin: origin)
        } catch {
            record(error, ip: ip)
            throw error
        }
    }

    /// A Socket.IO CONNECT on a session admitted by ``admitHandshake(ip:origin:)``: the block list again (a
    /// block may have come since), the token, and the user's pool for the session's slot.
    func admitConnect(
        _ reservation: SlotReservation, token: String?, data: JSONValue? = nil, headers: [String: String] = [:], on loop: any EventLoop
    ) -> EventLoopFuture<AdmittedUpgrade> {
        let ip = reservation.ip
        do throws(UpgradeRejection) {
            try screenBlockAndOrigin(ip: ip, origin: nil)
        } catch {
            record(error, ip: ip)
            return loop.makeFailedFuture(error)
        }
        // In cluster mode the session's CONNECT is its attempt in the cluster's count (its handshake was counted by
        // this node alone, synchronously).
        guard node.cluster == nil else {
            return countedInCluster(ip: ip, on: loop).flatMapErrorThrowing { error in
                let rejection = UpgradeRejection(error)
                record(rejection, ip: ip)
                throw rejection
            }.flatMap { [self] in admitConnectChecked(reservation, token: token, data: data, headers: headers, on: loop) }
        }
        return admitConnectChecked(reservation, token: token, data: data, headers: headers, on: loop)
    }

    /// ``admitConnect(_:token:data:headers:on:)`` after the block list and the cluster's count: the token (or the
    /// connect proxy, SPEC §14, for a CONNECT without one), then the user's pool.
    private func admitConnectChecked(
        _ reservation: SlotReservation, token: String?, data: JSONValue?, headers: [String: String], on loop: any EventLoop
    ) -> EventLoopFuture<AdmittedUpgrade> {
        let ip = reservation.ip
        let identity: EventLoopFuture<Identity>
        if let token {
            identity = node.auth.tokens.rememberedIdentity(of: token).map { loop.makeSucceededFuture($0) } ?? verifying(token, on: loop)
        } else if node.auth.hasConnectProxy {
            let allowAnonymous = node.settings.allowAnonymous
            identity = askingConnectProxy(transport: "socketio", ip: ip, headers: headers, data: data, on: loop).flatMapThrowing { identity in
                guard identity.isAuthenticated || allowAnonymous else {
                    throw UpgradeRejection(status: .unauthorized, code: .unauthorized, message: "a session is required: anonymous access is off")
                }
                return identity
            }
        } else {
            guard node.settings.allowAnonymous else {
                // Counted, but no failed authentication (as a `/ws` upgrade without a token is not one).
                node.statistics.recordAttempt(.unauthorized)
                return loop.makeFailedFuture(
                    UpgradeRejection(status: .unauthorized, code: .unauthorized, message: "a token is required: anonymous access is off"))
            }
            node.statistics.recordAttempt(.accepted)
            return loop.makeSucceededFuture(AdmittedUpgrade(identity: .anonymous, ip: ip, reservation: reservation, wantsBatches: false, subscriptions: []))
        }
        let admitted = identity.flatMapThrowing { identity throws(UpgradeRejection) -> AdmittedUpgrade in
            if identity.isAuthenticated { node.statistics.recordAuth(succeeded: true) }
            if let userId = identity.userId {
                do { try reservation.reassign(to: userId) } catch { throw Self.perUserPoolFull }
            }
            return AdmittedUpgrade(identity: identity, ip: ip, reservation: reservation, wantsBatches: false, subscriptions: [])
        }.flatMap { upgrade in leaseClusterSlot(for: upgrade, on: loop) }
        return counted(admitted, ip: ip)
    }

    /// SPEC §3 steps 4-5 for a request that passed the first checks: the token, then the pools. In cluster mode
    /// the connect rate is the cluster's too (SPEC §14): the attempt is counted in Redis first, by one script call.
    private func admit(_ request: CheckedRequest, on loop: any EventLoop) -> Outcome {
        // Asynchronous when the cluster counts the attempt, or the platform's backend says who a client without a
        // token is (SPEC §14: after the block list, the origin and the connect rate; before the pools).
        if node.cluster != nil || (request.token == nil && node.auth.hasConnectProxy) {
            let admitted = countedInCluster(ip: request.ip, on: loop).flatMap { [self] in
                self.resolveIdentity(of: request, on: loop).flatMapThrowing { identity in try reserve(request, for: identity) }
                    .flatMap { upgrade in leaseClusterSlot(for: upgrade, on: loop) }
            }
            return .pending(counted(admitted, ip: request.ip))
        }
        let identity: Identity
        if let token = request.token {
            guard let remembered = node.auth.tokens.rememberedIdentity(of: token) else {
                return .pending(counted(verifying(token, on: loop).flatMapThrowing { identity in try reserve(request, for: identity) }
                    .flatMap { upgrade in leaseClusterSlot(for: upgrade, on: loop) }, ip: request.ip))
            }
            identity = remembered
        } else {
            identity = .anonymous
        }
        let upgrade: AdmittedUpgrade
        do {
            upgrade = try reserve(request, for: identity)
        } catch {
            record(error, ip: request.ip)
            return .decided(.failure(error))
        }
        if needsClusterSlot(upgrade) { return .pending(counted(leaseClusterSlot(for: upgrade, on: loop), ip: request.ip)) }
        node.statistics.recordAttempt(.accepted)
        return .decided(.success(upgrade))
    }

    /// The attempt counted across the cluster (``Cluster/countPerMinute(_:key:)``), refused when the cluster counted
    /// more than `connect-rate-per-ip` in the last minute. The node's own count ran first (``screen(ip:origin:)``);
    /// it alone decides while the cluster cannot be asked.
    private func countedInCluster(ip: String, on loop: any EventLoop) -> EventLoopFuture<Void> {
        guard let cluster = node.cluster else { return loop.makeSucceededVoidFuture() }
        let limit = node.settings.connectRatePerIP
        return loop.makeFutureWithTask { () async throws -> Void in
            if let count = await cluster.countPerMinute(.connectAttempt, key: ip), count > limit {
                throw Self.connectRateExceeded(limit: limit)
            }
        }
    }

    static func connectRateExceeded(limit: Int) -> UpgradeRejection {
        UpgradeRejection(
            status: .tooManyRequests, code: .rateLimited, message: "too many connection attempts: at most \(limit) per minute per IP")
    }

    /// The identity `token` carries, from a verification task (a refusal is SPEC §3's 401 `UNAUTHORIZED`).
    func verifying(_ token: String, on loop: any EventLoop) -> EventLoopFuture<Identity> {
        let tokens = node.auth.tokens
        return loop.makeFutureWithTask { () async throws -> Identity in
            do throws(TokenVerifier.Failure) {
                return try await tokens.verify(token)
            } catch {
                throw UpgradeRejection(status: .unauthorized, code: .unauthorized, message: error.description)
            }
        }
    }

    /// `admitted`, counted as accepted or recorded as refused once it completes.
    private func counted(_ admitted: EventLoopFuture<AdmittedUpgrade>, ip: String) -> EventLoopFuture<AdmittedUpgrade> {
        admitted.map { upgrade in
            node.statistics.recordAttempt(.accepted)
            return upgrade
        }.flatMapErrorThrowing { error in
            let rejection = UpgradeRejection(error)
            record(rejection, ip: ip)
            throw rejection
        }
    }

    private func needsClusterSlot(_ upgrade: AdmittedUpgrade) -> Bool {
        node.cluster != nil && upgrade.identity.userId != nil
    }

    /// In cluster mode, an authenticated user's connection also takes a slot of the user's cluster-wide pool
    /// (SPEC §8: per-user limits hold across nodes); refused like the node's own per-user pool.
    private func leaseClusterSlot(for upgrade: AdmittedUpgrade, on loop: any EventLoop) -> EventLoopFuture<AdmittedUpgrade> {
        guard node.cluster != nil, let userId = upgrade.identity.userId else { return loop.makeSucceededFuture(upgrade) }
        let limit = node.settings.maxConnectionsPerUser
        return loop.makeFutureWithTask { () async throws -> AdmittedUpgrade in
            guard await upgrade.reservation.leaseClusterSlot(of: userId, limit: limit) else {
                upgrade.reservation.release()
                throw Self.perUserPoolFull
            }
            return upgrade
        }
    }

    static let perUserPoolFull = UpgradeRejection(
        status: .tooManyRequests, code: .connectionLimit, message: "too many connections for this user")

    /// Counts a refusal and writes its security event.
    private func record(_ rejection: UpgradeRejection, ip: String) {
        node.statistics.recordAttempt(rejection.result)
        switch rejection.result {
        case .rateLimited:
            node.statistics.recordRateLimited(.connectRate)
            node.gatekeeper.audit.record(SecurityEvent(.rateLimited, ip: ip, detail: "connect rate: \(rejection.message)"))
        case .unauthorized:
            node.gatekeeper.authenticationFailed(ip: ip, connectionId: nil, detail: "at upgrade: \(rejection.message)")
        case .connectionLimit:
            node.gatekeeper.audit.record(SecurityEvent(.connectionLimit, ip: ip, detail: rejection.message))
        case .originNotAllowed:
            node.gatekeeper.audit.record(SecurityEvent(.originRejected, ip: ip, detail: rejection.message))
        default:
            break
        }
    }

    /// An upgrade request that passed the checks before the token (SPEC §3 steps 1-3).
    struct CheckedRequest {
        let ip: String
        let token: String?
        let wantsBatches: Bool
        let subscriptions: [String]
        /// For the connect proxy, when it is asked (no token): the request's Cookie, Authorization, Origin, User-Agent.
        var forwardedHeaders: [String: String] = [:]
    }

    /// The checks before the token's verification, in SPEC §3's order.
    private func check(_ head: HTTPRequestHead, ip: String) throws(UpgradeRejection) -> CheckedRequest {
        let target = URI(head.uri)
        guard target.path == Self.path else {
            throw UpgradeRejection(status: .notFound, code: .notFound, message: "no WebSocket endpoint at \(target.path); use \(Self.path)")
        }
        guard WebSocketHandshake.key(of: head) != nil else {
            throw UpgradeRejection(
                status: .badRequest, code: .badRequest,
                message: "invalid WebSocket handshake: send one 16-byte base64 Sec-WebSocket-Key and Sec-WebSocket-Version: 13")
        }
        try screen(ip: ip, origin: head.headers["Origin"].first)
        let query = target.queryParameters
        let settings = node.settings
        let token = Self.token(in: head, query: query)
        return CheckedRequest(
            ip: ip, token: token, wantsBatches: query["batch"] == "true",
            subscriptions: Self.subscriptions(in: query, limit: settings.maxSubscriptions),
            forwardedHeaders: token == nil && node.auth.hasConnectProxy ? Self.forwardedHeaders(of: head.headers) : [:])
    }

    /// SPEC §3 steps 1-3: block list, origin, connect rate.
    private func screen(ip: String, origin: String?) throws(UpgradeRejection) {
        try screenBlockAndOrigin(ip: ip, origin: origin)
        guard node.gatekeeper.connectRateLimiter.allow(ip) else { throw Self.connectRateExceeded(limit: node.settings.connectRatePerIP) }
    }

    /// SPEC §3 steps 1-2: block list, origin.
    private func screenBlockAndOrigin(ip: String, origin: String?) throws(UpgradeRejection) {
        guard !node.gatekeeper.blockList.isBlocked(ip) else {
            throw UpgradeRejection(status: .forbidden, code: .ipBlocked, message: "this IP address is blocked")
        }
        let allowed = node.settings.allowedOrigins
        if let origin, !allowed.isEmpty, !allowed.contains(origin) {
            throw UpgradeRejection(status: .forbidden, code: .originNotAllowed, message: "origin '\(origin.prefix(200))' is not allowed")
        }
    }

    /// Step 5, after the token: reserves the connection's slot in the pools.
    private func reserve(_ request: CheckedRequest, for identity: Identity) throws(UpgradeRejection) -> AdmittedUpgrade {
        if identity.isAuthenticated { node.statistics.recordAuth(succeeded: true) }
        do {
            try node.gatekeeper.pools.reserve(ip: request.ip, userId: identity.userId)
        } catch {
            switch error {
            case .global:
                throw UpgradeRejection(status: .serviceUnavailable, code: .connectionLimit, message: "server is at its connection limit")
            case .perIP:
                throw UpgradeRejection(status: .tooManyRequests, code: .connectionLimit, message: "too many connections from this IP address")
            case .perUser:
                throw Self.perUserPoolFull
            }
        }
        return AdmittedUpgrade(
            identity: identity, ip: request.ip,
            reservation: SlotReservation(slots: node.gatekeeper.slots, ip: request.ip, userId: identity.userId),
            wantsBatches: request.wantsBatches, subscriptions: request.subscriptions)
    }

    /// The channels of `?subscribe=a,b` (at most one more than the subscription limit, so that going over it is
    /// still answered with `SUBSCRIPTION_LIMIT`). The value is percent-decoded once, by `URI.queryParameters`: a
    /// name still holding `%` after that is not a channel name (decoding it again turned `market_data%253AX` into
    /// `market_data:X`, and cost 3 % of the server's CPU in a `?subscribe=` storm, through Foundation).
    private static func subscriptions(in query: FlatDictionary<Substring, Substring>, limit: Int) -> [String] {
        guard let list = query["subscribe"], !list.isEmpty else { return [] }
        return list.split(separator: ",").prefix(limit + 1).map(String.init)
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
