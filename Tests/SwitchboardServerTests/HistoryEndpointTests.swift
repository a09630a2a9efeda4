import Foundation
import RedisTestSupport
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// `GET /api/v1/websocket/history/{channel}` (issue 36): SPEC §5's recovery for clients that poll over HTTP, with
/// the access rules of subscribing.
@Suite struct HistoryEndpointTests {
    static let path = "/api/v1/websocket/history/"

    static func body(_ response: HTTPTestResponse) throws -> [String: Any] {
        #expect(response.status == 200, "\(response.status) \(response.body)")
        return try TestClient.parse(response.body)
    }

    static func seqs(_ body: [String: Any]) -> [Int] {
        (body["messages"] as? [[String: Any]] ?? []).compactMap { $0["seq"] as? Int }
    }

    @Test func aPositionInTheCurrentStreamIsRecoveredWithWhatFollowsIt() async throws {
        try await TestNode.with { node in
            let token = try await node.token("trader", tier: "premium")
            let channel = "trading_signals:hist"
            for n in 1...4 { _ = try await node.node.publisher.publish(Publication(channel: channel, event: "e", data: "\(n)")) }
            let whole = try Self.body(try await node.request("GET", Self.path + channel, token: token))
            let epoch = try #require(whole["epoch"] as? String)
            #expect(whole["seq"] as? Int == 4 && whole["recovered"] == nil)
            #expect(Self.seqs(whole) == [1, 2, 3, 4])
            #expect((whole["messages"] as? [[String: Any]])?.first?["type"] as? String == "message")

            let after = try Self.body(try await node.request("GET", Self.path + channel + "?since=2&epoch=\(epoch)", token: token))
            #expect(after["recovered"] as? Bool == true)
            #expect(Self.seqs(after) == [3, 4], "the missed messages, once, in order")
            let current = try Self.body(try await node.request("GET", Self.path + channel + "?since=4&epoch=\(epoch)", token: token))
            #expect(current["recovered"] as? Bool == true && Self.seqs(current).isEmpty)

            // Another epoch, or a position ahead of the stream: never recovered; what is held comes as a fresh start.
            let other = try Self.body(try await node.request("GET", Self.path + channel + "?since=2&epoch=elsewhere", token: token))
            #expect(other["recovered"] as? Bool == false && Self.seqs(other) == [1, 2, 3, 4])
            let ahead = try Self.body(try await node.request("GET", Self.path + channel + "?since=9", token: token))
            #expect(ahead["recovered"] as? Bool == false)

            // A channel the node holds no stream of is not made for the asking.
            let unknown = try Self.body(try await node.request("GET", Self.path + "trading_signals:none?since=0", token: token))
            #expect(unknown["epoch"] is NSNull && unknown["seq"] as? Int == 0 && unknown["recovered"] as? Bool == false)
            #expect(!node.node.hub.holds("trading_signals:none"))
        }
    }

    @Test func theAccessRulesOfSubscribingApply() async throws {
        try await TestNode.with { node in
            let channel = "trading_signals:hist"
            _ = try await node.node.publisher.publish(Publication(channel: channel, event: "e", data: "1"))
            let anonymous = try await node.request("GET", Self.path + channel)
            #expect(anonymous.status == 403, "no tier: \(anonymous.body)")
            let basic = try await node.request("GET", Self.path + channel, token: try await node.token("u", tier: "basic"))
            #expect(basic.status == 403)
            let otherUser = try await node.request("GET", Self.path + "user:alice", token: try await node.token("bob"))
            #expect(otherUser.status == 403, "user channels are their owner's")
            let owner = try await node.request("GET", Self.path + "user:alice", token: try await node.token("alice"))
            #expect(owner.status == 200)
            let invalid = try await node.request("GET", Self.path + channel, token: "not-a-token")
            #expect(invalid.status == 401)
            let premium = try await node.token("t", tier: "premium")
            let unknownNamespace = try await node.request("GET", Self.path + "nowhere:x")
            #expect(unknownNamespace.status == 400)
            let negative = try await node.request("GET", Self.path + channel + "?since=-1", token: premium)
            #expect(negative.status == 400)
            let epochAlone = try await node.request("GET", Self.path + channel + "?epoch=e", token: premium)
            #expect(epochAlone.status == 400)
        }
        try await TestNode.with({ $0.allowAnonymous = false }) { node in
            let anonymous = try await node.request("GET", Self.path + "market_data:AAPL")
            #expect(anonymous.status == 401)
        }
    }

    /// Every node answers the same (SPEC §8): a node that never saw the channel reads it from Redis first.
    @Test func inAClusterEveryNodeAnswersTheSame() async throws {
        try await ClusterTests.withCluster(nodes: 2) { nodes, _ in
            let token = try await nodes[0].token("trader", tier: "premium")
            let channel = "trading_signals:cluster-hist"
            for n in 1...3 { _ = try await nodes[0].node.publisher.publish(Publication(channel: channel, event: "e", data: "\(n)")) }
            let first = try Self.body(try await nodes[0].request("GET", Self.path + channel + "?since=1", token: token))
            try await eventually("the other node has the stream") {
                let second = try Self.body(try await nodes[1].request("GET", Self.path + channel + "?since=1", token: token))
                return Self.seqs(second) == [2, 3] && second["epoch"] as? String == first["epoch"] as? String
            }
            #expect(first["recovered"] as? Bool == true && Self.seqs(first) == [2, 3])
        }
    }
}
