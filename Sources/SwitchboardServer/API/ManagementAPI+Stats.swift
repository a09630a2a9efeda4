import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Prometheus
import SwitchboardCore

/// `GET /api/v1/websocket/stats` (SPEC §6, §8): the node's figures, and in a cluster every node's.
extension ManagementAPI {
    func stats(_ request: Request, _ context: APIContext) async throws -> Response {
        try await requireAdmin(request, context)
        let counts = node.statistics.snapshot()
        let pools = node.gatekeeper.pools.snapshot
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
                "tls": int(node.gateway.tls == nil ? 0 : counts.connections),
                "uniqueUsers": int(pools.uniqueUsers),
                "uniqueIPs": int(pools.uniqueIPs),
                // Socket.IO sessions that did the handshake and have not CONNECTed: they hold a slot in the pools too.
                "awaitingConnect": int(node.gateway.engineSessions.awaitingConnect),
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
            "blockedIPs": int(node.gatekeeper.blockList.count()),
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
    static func clusterStats(of node: Node, in cluster: any Cluster) async -> JSONValue {
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
                "perIPLimits": .string(link.isUp ? "cluster" : "node"),
            ]),
        ])
    }
}
