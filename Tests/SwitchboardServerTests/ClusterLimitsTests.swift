import Foundation
import RedisTestSupport
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// SPEC §14: per-IP connect rates and failed authentications are counted across the cluster (one script call per
/// attempt), and per node while Redis is unreachable, which health and stats say.
@Suite struct ClusterLimitsTests {
    @Test func anIPsConnectRateHoldsOverBothNodes() async throws {
        try await ClusterTests.withCluster(nodes: 2, { $0.connectRatePerIP = 10 }) { nodes, _ in
            // Alternating nodes: each node alone counts 5, under its limit.
            for attempt in 0..<10 {
                #expect(try await nodes[attempt % 2].upgrade(localAddress: "127.0.0.61").isUpgraded, "attempt \(attempt + 1)")
            }
            for node in nodes {
                let refusal = try #require(try await node.upgrade(localAddress: "127.0.0.61").refusal, "the 11th and 12th")
                #expect(refusal.status == 429 && refusal.errorCode == "RATE_LIMITED")
            }
            // Another IP has its own budget, on either node.
            #expect(try await nodes[1].upgrade(localAddress: "127.0.0.62").isUpgraded)
            let stats = try await nodes[0].request("GET", "/api/v1/websocket/stats", token: try await nodes[0].token("ops", role: .admin))
            let redis = ((stats.json["cluster"] as? [String: Any])?["redis"] as? [String: Any]) ?? [:]
            #expect(redis["perIPLimits"] as? String == "cluster", "\(stats.body)")
        }
    }

    @Test func failedAuthenticationsSpreadOverBothNodesBlockTheIPOnBoth() async throws {
        try await ClusterTests.withCluster(nodes: 2, { $0.blockAfterFailures = 5; $0.connectRatePerIP = 1_000 }) { nodes, _ in
            // Three failures on one node, two on the other: neither reaches 5 alone.
            for attempt in 0..<5 {
                let refusal = try #require(
                    try await nodes[attempt % 2].upgrade(path: "/ws?token=garbage", localAddress: "127.0.0.63").refusal)
                #expect(refusal.status == 401)
            }
            for (index, node) in nodes.enumerated() {
                try await eventually("node \(index) refuses the IP as blocked") {
                    try await node.upgrade(localAddress: "127.0.0.63").refusal?.errorCode == "IP_BLOCKED"
                }
            }
            #expect(try await nodes[0].upgrade(localAddress: "127.0.0.64").isUpgraded, "another IP is not blocked")
        }
    }

    @Test func withRedisUnreachableEachNodeCountsItsOwnAndHealthSaysSo() async throws {
        try await ClusterTests.withCluster(nodes: 2, { $0.connectRatePerIP = 3 }) { nodes, redis in
            let health = try await nodes[0].request("GET", "/api/v1/websocket/health")
            #expect((health.json["checks"] as? [String: Any])?["perIPLimits"] as? String == "cluster", "\(health.body)")
            redis.pause()
            defer { redis.resume() }
            for (index, node) in nodes.enumerated() {
                try await eventually("node \(index) notices the hung Redis") { try await node.healthStatus() == "degraded" }
            }
            let degraded = try await nodes[0].request("GET", "/api/v1/websocket/health")
            let checks = degraded.json["checks"] as? [String: Any] ?? [:]
            #expect((checks["perIPLimits"] as? String)?.hasPrefix("node") == true, "\(degraded.body)")
            // Each node admits its own 3 attempts of the IP (6 in all), then refuses: its own count, not the cluster's.
            for node in nodes {
                for attempt in 0..<3 {
                    #expect(try await node.upgrade(localAddress: "127.0.0.65").isUpgraded, "attempt \(attempt + 1)")
                }
                #expect(try await node.upgrade(localAddress: "127.0.0.65").refusal?.status == 429)
            }
        }
    }
}
