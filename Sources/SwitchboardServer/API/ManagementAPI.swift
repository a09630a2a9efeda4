import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Prometheus
import SwitchboardCore

/// The HTTP management API of SPEC §6 and `/metrics`. `openapi.yaml` describes every route here.
struct ManagementAPI: Sendable {
    let node: Node

    /// Largest API request body accepted.
    static let maxBodyBytes = 4 * 1_048_576
    static let prefix = "/api/v1/websocket"

    typealias Handler = @Sendable (Request, APIContext) async throws -> Response

    func register(on router: Router<APIContext>) {
        let apiRoutes: [(HTTPRequest.Method, String, Handler)] = [
            (.get, "\(Self.prefix)/health", { _, _ in await self.health() }),
            (.get, "\(Self.prefix)/stats", { request, context in try await self.stats(request, context) }),
            (.get, "\(Self.prefix)/channels", { request, context in try await self.channels(request, context) }),
            (.get, "\(Self.prefix)/connections/:userId", { request, context in try await self.connections(request, context) }),
            (.post, "\(Self.prefix)/disconnect/user/:userId", { request, context in try await self.disconnectUser(request, context) }),
            (.post, "\(Self.prefix)/disconnect/ip/:ip", { request, context in try await self.disconnectIP(request, context) }),
            (.post, "\(Self.prefix)/disconnect/:connectionId", { request, context in try await self.disconnect(request, context) }),
            (.get, "\(Self.prefix)/history/:channel", { request, context in try await self.history(request, context) }),
            (.post, "\(Self.prefix)/broadcast", { request, context in try await self.broadcast(request, context) }),
            (.post, "\(Self.prefix)/broadcast/batch", { request, context in try await self.broadcastBatch(request, context) }),
            (.get, "/metrics", { request, _ in try self.metrics(request) }),
            (.get, UpgradeAdmission.path, { _, _ in
                throw APIError.badRequest(
                    "\(UpgradeAdmission.path) is a WebSocket endpoint: send an upgrade request (Upgrade: websocket, Sec-WebSocket-Version: 13)")
            }),
        ]
        let pages: [(HTTPRequest.Method, String, Handler)] = Dashboard.routes.map { page in
            (.get, page.path, { _, _ in Dashboard.response(contentType: page.contentType, body: page.body) })
        }
        let routes = apiRoutes + pages
        var table = RouteTable()
        for (method, path, _) in routes { table.add(method, path) }
        router.add(middleware: JSONErrorMiddleware(routes: table))
        for (method, path, handler) in routes {
            router.on(RouterPath(path), method: method, use: handler)
        }
    }

    // MARK: health, stats, channels

    /// Longest an event loop may take to run a task before the node reports `degraded`.
    static let responsiveWithin: Duration = .milliseconds(500)

    private func health() async -> Response {
        let slowLoops = await HealthCheck.unresponsiveLoops(of: node.eventLoopGroup, within: Self.responsiveWithin)
        let loopCount = node.eventLoopGroup.makeIterator().reduce(0) { count, _ in count + 1 }
        var status = HealthCheck.status(unresponsiveLoops: slowLoops, of: loopCount)
        var checks: [String: JSONValue] = [
            "eventLoops": .string(slowLoops == 0 ? "ok" : "\(slowLoops) of \(loopCount) slower than \(Self.responsiveWithin)")
        ]
        if let cluster = node.cluster {
            // SPEC §8: without Redis the node still serves its own clients, so it is degraded, not unhealthy.
            let isUp = cluster.linkStatus.isUp
            checks["redis"] = .string(isUp ? "ok" : "unreachable: publishes reach this node's subscribers only")
            if !isUp && status == .ok { status = .degraded }
        }
        let body: JSONValue = .object([
            "status": .string(status.rawValue),
            "checks": .object(checks),
            "uptimeSeconds": .int(Int64(node.uptimeSeconds)),
            "nodeId": .string(node.settings.nodeId),
        ])
        return Self.json(body, status: status == .unhealthy ? .serviceUnavailable : .ok)
    }

    private func stats(_ request: Request, _ context: APIContext) async throws -> Response {
        try await requireAdmin(request, context)
        let counts = node.statistics.snapshot()
        let pools = node.pools.snapshot
        func int(_ value: Int) -> JSONValue { .int(Int64(value)) }
        var rateLimited = Dictionary(uniqueKeysWithValues: counts.rateLimited.map { ($0.key.rawValue, int($0.value)) })
        rateLimited["total"] = int(counts.rateLimited.values.reduce(0, +))
        let body: JSONValue = .object([
            "nodeId": .string(node.settings.nodeId),
            "uptimeSeconds": int(node.uptimeSeconds),
            "rssBytes": int(ProcessMemory.residentBytes()),
            "connections": .object([
                "total": int(counts.connections),
                "authenticated": int(counts.connections - counts.anonymousConnections),
                "anonymous": int(counts.anonymousConnections),
                "peak": int(counts.peakConnections),
                "byRole": .object(Dictionary(uniqueKeysWithValues: counts.connectionsByRole.map { ($0.key.rawValue, int($0.value)) })),
                "byTransport": .object(Dictionary(uniqueKeysWithValues: counts.connectionsByTransport.map { ($0.key.rawValue, int($0.value)) })),
                // SPEC §12: with tls-cert set the port serves TLS only, so every connection is a TLS one.
                "tls": int(node.tls == nil ? 0 : counts.connections),
                "uniqueUsers": int(pools.uniqueUsers),
                "uniqueIPs": int(pools.uniqueIPs),
                // Socket.IO sessions that did the handshake and have not CONNECTed: they hold a slot in the pools too.
                "awaitingConnect": int(node.engineSessions.awaitingConnect),
                "accepted": int(counts.upgradesAccepted),
                "acceptedPerSecond": .double(counts.upgradesAcceptedPerSecond),
            ]),
            // Host-wide kernel counters (every listener on the machine): a reconnect storm that overflowed the
            // listen queue shows here, since a node cannot see the connections the kernel dropped for it.
            "listenQueue": .object(ListenQueueCounters.recent.value().map { ["overflows": int($0.overflows), "drops": int($0.drops)] } ?? [:]),
            "channels": .object([
                "total": int(node.hub.channelCount), "subscriptions": int(counts.subscriptions), "streamRestarts": int(counts.streamRestarts),
            ]),
            "messages": .object([
                "published": int(counts.published), "delivered": int(counts.delivered), "dropped": int(counts.dropped),
                "publishedPerSecond": .double(counts.publishedPerSecond), "deliveredPerSecond": .double(counts.deliveredPerSecond),
            ]),
            // SPEC §12: `out` counts every byte written; `compressedOut` the part written as compressed frames, and
            // `compressedRaw` what those frames would have taken uncompressed (so the saving is their difference).
            "bytes": .object([
                "in": int(counts.bytesIn), "out": int(counts.bytesOut),
                "compressedOut": int(counts.compressedBytesOut), "compressedRaw": int(counts.compressedFramesRawBytes),
            ]),
            "auth": .object(["successes": int(counts.authSuccesses), "failures": int(counts.authFailures)]),
            "blockedIPs": int(node.blockList.count()),
            "rateLimited": .object(rateLimited),
            "slowConsumerDisconnects": int(counts.slowConsumerCloses),
            "auditLinesDropped": int(counts.auditLinesDropped),
            "securityEvents": .object(Dictionary(uniqueKeysWithValues: counts.securityEvents.map { ($0.key.rawValue, int($0.value)) })),
        ])
        guard let cluster = node.cluster, case .object(var fields) = body else { return Self.json(body) }
        fields["cluster"] = await Self.clusterStats(of: node, in: cluster)
        return Self.json(.object(fields))
    }

    /// `stats.cluster` (SPEC §8): every live node's announced figures (this one's as of now) and their totals,
    /// and the state of the Redis link.
    private static func clusterStats(of node: Node, in cluster: any Cluster) async -> JSONValue {
        var nodes = await cluster.peers()
        nodes[node.settings.nodeId] = node.figures()
        var totals: [String: JSONValue] = [:]
        for name in Node.summedFigures {
            totals[name] = .int(nodes.values.reduce(0) { sum, figures in
                if case .int(let value)? = figures[name] { return sum + value }
                return sum
            })
        }
        let link = cluster.linkStatus
        return .object([
            "nodes": .array(nodes.sorted { $0.key < $1.key }.map { id, figures in
                guard case .object(var fields) = figures else { return .object(["nodeId": .string(id)]) }
                fields["channels"] = nil
                fields["nodeId"] = .string(id)
                return .object(fields)
            }),
            "totals": .object(totals),
            "redis": .object([
                "up": .bool(link.isUp), "reconnects": .int(Int64(link.reconnects)), "notForwarded": .int(Int64(link.notForwarded)),
            ]),
        ])
    }

    private func channels(_ request: Request, _ context: APIContext) async throws -> Response {
        let identity = try await self.identity(of: request, context) ?? .anonymous
        let directory = node.hub.directory
        let readable = node.settings.namespaces.filter { namespace in
            // A namespace is listed when the caller may subscribe to some channel of it.
            let topic = namespace.ownerOnly ? identity.userId ?? "" : "any"
            let example = namespace.topic == .forbidden ? namespace.name : "\(namespace.name):\(topic)"
            return (try? directory.authorizeSubscribe(example, by: identity)) != nil
        }
        var body: [String: JSONValue] = ["namespaces": .array(readable.map(Self.describe))]
        if identity.role.isAdmin {
            // Cluster-wide counts in cluster mode (SPEC §8), as of each node's last announcement.
            body["live"] = .array(await node.clusterChannelCounts().map { summary in
                .object(["channel": .string(summary.name), "subscribers": .int(Int64(summary.subscribers))])
            })
        }
        return Self.json(.object(body))
    }

    private static func describe(_ namespace: Namespace) -> JSONValue {
        .object([
            "name": .string(namespace.name),
            "topic": .string(namespace.topic.rawValue),
            "minRole": .string(namespace.minRole.rawValue),
            "tiers": namespace.tiers.map { .array($0.map(JSONValue.string)) } ?? .null,
            "ownerOnly": .bool(namespace.ownerOnly),
            "throttleMs": .int(Int64(namespace.throttleMs)),
            "conflate": .bool(namespace.conflate),
            "lastValue": .bool(namespace.lastValue),
            "history": .int(Int64(namespace.history)),
        ])
    }

    // MARK: connections and disconnects

    private func connections(_ request: Request, _ context: APIContext) async throws -> Response {
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

    private func disconnect(_ request: Request, _ context: APIContext) async throws -> Response {
        let admin = try await requireAdmin(request, context)
        let id = try Self.pathParameter("connectionId", of: context)
        let reason = try await Self.reason(in: request)
        var closed = 0
        if let connection = node.connections.connection(id: id) {
            closed = node.disconnectByAdmin([connection], target: "connection \(id)", by: Self.name(of: admin), reason: reason)
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

    private static func name(of admin: Identity) -> String { admin.userId ?? "?" }

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
    private func performed(_ command: ClusterCommand, in cluster: any Cluster) async -> Int {
        do {
            return try await cluster.perform(command)
        } catch {
            node.logger.warning("cluster command reached this node only", metadata: ["sb.error": "\(error)"])
            return 0
        }
    }

    private func disconnectUser(_ request: Request, _ context: APIContext) async throws -> Response {
        let admin = try await requireAdmin(request, context)
        let userId = try Self.pathParameter("userId", of: context)
        let reason = try await Self.reason(in: request)
        var closed = node.disconnectByAdmin(
            node.connections.connections(ofUser: userId), target: "user \(userId)", by: Self.name(of: admin), reason: reason)
        if let cluster = node.cluster { closed += await performed(.disconnectUser(id: userId, reason: reason), in: cluster) }
        return Self.json(.object(["disconnected": .int(Int64(closed))]))
    }

    private func disconnectIP(_ request: Request, _ context: APIContext) async throws -> Response {
        let admin = try await requireAdmin(request, context)
        let given = try Self.pathParameter("ip", of: context)
        // Normalised as every per-IP rule keys it: `2001:DB8::1` and `2001:db8:0::1` are one address, an IPv6
        // client is its `ipv6-prefix-length` prefix, and an IPv4-mapped address is the IPv4 one.
        guard let ip = node.addresses.key(ofAdminInput: given) else { throw APIError.badRequest("ip: '\(given)' is not an IP address") }
        let body = try await Self.optionalJSONBody(of: request)
        let reason = try Self.reason(in: body)
        var blockSeconds: Int64?
        switch body?["blockSeconds"] {
        case nil: blockSeconds = nil
        case .int(let seconds)? where seconds > 0 && seconds <= 365 * 86_400: blockSeconds = seconds
        default: throw APIError.badRequest("blockSeconds: a whole number of seconds, 1 to 31536000")
        }
        var closed = node.disconnectByAdmin(
            node.connections.all.filter { $0.ip == ip }, target: "ip \(ip)", by: Self.name(of: admin), reason: reason)
        // The other nodes close the IP's connections as an admin's disconnect (4000) before the block reaches
        // them (commands arrive in the order sent), so the block finds nothing of the IP left to close with 1008.
        if let cluster = node.cluster { closed += await performed(.disconnectIP(ip, reason: reason), in: cluster) }
        if let blockSeconds {
            closed += await node.block(ip, for: .seconds(blockSeconds), reason: "by \(Self.name(of: admin)): \(reason)")
        }
        var result: [String: JSONValue] = ["disconnected": .int(Int64(closed))]
        if let blockSeconds { result["blockedSeconds"] = .int(blockSeconds) }
        return Self.json(.object(result))
    }

    private static func reason(in request: Request) async throws -> String {
        try reason(in: try await optionalJSONBody(of: request))
    }

    private static func reason(in body: JSONValue?) throws -> String {
        guard body == nil || body?.isObject == true else { throw APIError.badRequest("body: must be a JSON object") }
        switch body?["reason"] {
        case nil: return defaultDisconnectReason
        case .string(let reason)? where reason.utf8.count <= 120: return reason
        default: throw APIError.badRequest("reason: a string of at most 120 bytes")
        }
    }

    // MARK: broadcast

    private func broadcast(_ request: Request, _ context: APIContext) async throws -> Response {
        let admin = try await requireAdmin(request, context)
        let body = try await Self.jsonBody(of: request)
        let broadcast: BroadcastRequest
        do {
            broadcast = try BroadcastRequest(body, directory: node.hub.directory)
        } catch {
            throw APIError(status: .badRequest, code: error.code, message: error.message)
        }
        let result = try await send(broadcast)
        await Self.letDeliveriesGoFirst()
        node.audit.recordBroadcast(
            by: admin.userId, namespace: broadcast.auditNamespace,
            detail: "\(broadcast.target.description) event \(broadcast.publication.event)")
        return Self.json(result)
    }

    /// SPEC §6: up to 1000 messages, validated as a whole first; one bad item rejects the batch, listing every bad index.
    private func broadcastBatch(_ request: Request, _ context: APIContext) async throws -> Response {
        let admin = try await requireAdmin(request, context)
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
        // One call for the whole batch: a cluster node sends it to Redis in one pipelined write.
        let published = await node.publishBatch(broadcasts.map { ($0.publication, $0.target) })
        await Self.letDeliveriesGoFirst()
        let results = try zip(published, broadcasts).map { result, broadcast in try Self.describe(result, of: broadcast) }
        for (namespace, items) in Dictionary(grouping: broadcasts, by: \.auditNamespace).sorted(by: { $0.key < $1.key }) {
            node.audit.recordBroadcast(
                by: admin.userId, namespace: namespace, messages: items.count,
                detail: "batch: \(items.count) of \(results.count) messages to namespace \(namespace)")
        }
        return Self.json(.object(["published": .int(Int64(results.count)), "results": .array(results)]))
    }

    /// Lets the subscribers' writes that a publish queued on this loop go out before the publisher's answer is
    /// encoded and written: the handler runs on its connection's loop, and without a yield the delivery to that
    /// loop's subscribers waited for the whole response.
    private static func letDeliveriesGoFirst() async {
        await Task.yield()
    }

    /// Publishes one validated broadcast and describes the result as SPEC's `{"channel","seq","recipients"}`.
    private func send(_ broadcast: BroadcastRequest) async throws -> JSONValue {
        let result: Result<Hub.PublishResult, Node.PublishError>
        do {
            result = .success(try await node.publish(broadcast.publication, to: broadcast.target))
        } catch {
            result = .failure(error)
        }
        return try Self.describe(result, of: broadcast)
    }

    /// SPEC's `{"channel","seq","recipients"}` for a publish, or the API error for its refusal.
    private static func describe(_ result: Result<Hub.PublishResult, Node.PublishError>, of broadcast: BroadcastRequest) throws -> JSONValue {
        let published: Hub.PublishResult
        switch result {
        case .success(let result): published = result
        case .failure(let error):
            switch error {
            case .target:
                // Validation resolved the channel already; only a namespace table without `user` gets here.
                throw APIError(status: .badRequest, code: error.code, message: error.message)
            case .broker:
                throw APIError(status: .serviceUnavailable, code: error.code, message: error.message)
            }
        }
        let channel: JSONValue = switch broadcast.target {
        case .channel(let name): .string(name)
        case .user(let userId): .string("user:\(userId)")
        case .all: .null
        }
        var fields: [String: JSONValue] = [
            "channel": channel, "seq": published.seq.map { .int(Int64($0)) } ?? .null, "recipients": .int(Int64(published.recipients)),
        ]
        if published.held { fields["held"] = .bool(true) }
        return .object(fields)
    }

    // MARK: metrics

    private func metrics(_ request: Request) throws -> Response {
        if let token = node.settings.metricsToken {
            guard let given = Self.bearerToken(of: request), ConstantTime.equal(given, token) else {
                throw APIError.unauthorized("/metrics needs Authorization: Bearer <metrics-token>")
            }
        }
        let text = node.metrics.emitToBuffer()
        return Response(
            status: .ok,
            headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .contentLength: "\(text.count)"],
            body: .init(byteBuffer: ByteBuffer(bytes: text)))
    }

    // MARK: Auth and bodies

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
        guard node.tokens.isConfigured else { throw APIError.unauthorized(TokenVerifier.notConfiguredMessage) }
        let ip = node.addresses.clientKey(peer: context.remoteAddress, forwardedFor: request.headers[values: .forwardedFor])
        guard !node.blockList.isBlocked(ip) else {
            throw APIError(status: .forbidden, code: .ipBlocked, message: "this IP address is blocked")
        }
        guard let token = Self.bearerToken(of: request) else {
            node.authenticationFailed(ip: ip, connectionId: nil, detail: "admin API: Authorization is not Bearer <token>")
            throw APIError.unauthorized("Authorization must be: Bearer <token>")
        }
        do {
            return try await node.tokens.verify(token)
        } catch {
            node.authenticationFailed(ip: ip, connectionId: nil, detail: "admin API: \(error.description)")
            throw APIError.unauthorized(error.description)
        }
    }

    /// SPEC §6: missing or invalid token -> 401, a role below admin -> 403.
    @discardableResult
    private func requireAdmin(_ request: Request, _ context: APIContext) async throws -> Identity {
        guard node.tokens.isConfigured else { throw APIError.unauthorized(TokenVerifier.notConfiguredMessage) }
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
