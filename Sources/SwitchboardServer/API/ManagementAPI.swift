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
            (.post, "\(Self.prefix)/subscribe", { request, context in try await self.subscribeUser(request, context) }),
            (.post, "\(Self.prefix)/unsubscribe", { request, context in try await self.unsubscribeUser(request, context) }),
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

    func health() async -> Response {
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
            // SPEC §14: per-IP connect rates and failed authentications are counted across the cluster, or per node.
            checks["perIPLimits"] = .string(isUp ? "cluster" : "node: counted by this node alone while Redis is unreachable")
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

    func channels(_ request: Request, _ context: APIContext) async throws -> Response {
        let identity = try await self.identity(of: request, context) ?? .anonymous
        let directory = node.hub.directory
        let readable = node.settings.namespaces.filter { namespace in
            // A namespace is listed when the caller may subscribe to some channel of it: by its rules, a grant in it,
            // or the subscribe proxy's answer (which may admit anyone).
            let topic = namespace.ownerOnly ? identity.userId ?? "" : "any"
            let example = namespace.topic == .forbidden ? namespace.name : "\(namespace.name):\(topic)"
            let granted = identity.grants.contains { $0 == namespace.name || $0.hasPrefix("\(namespace.name):") }
            return namespace.subscribeProxy || granted || (try? directory.authorizeSubscribe(example, by: identity)) != nil
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

    static func describe(_ namespace: Namespace) -> JSONValue {
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
            "grant": .string(namespace.grantRequired ? "required" : "optional"),
            "subscribeProxy": .bool(namespace.subscribeProxy),
        ])
    }

    // MARK: metrics

    func metrics(_ request: Request) throws -> Response {
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
}
