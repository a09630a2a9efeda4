import Foundation
import NIOConcurrencyHelpers
import NIOCore
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// The broker seam: every publish path goes through the node's broker, and one that answers only after a
/// round trip (as a cluster broker does) keeps replies in request order.
@Suite struct BrokerSeamTests {
    /// A broker that takes its time, then delivers locally; counts what it was given.
    final class SlowBroker: Broker, @unchecked Sendable {
        let local: LocalBroker
        private let lock = NSLock()
        private var published: [String] = []

        init(hub: Hub, recipients: any LocalRecipients) {
            local = LocalBroker(hub: hub, recipients: recipients)
        }

        var channels: [String] { lock.withLock { published } }

        func publish(_ publication: Publication, to target: BrokerTarget) async throws(BrokerError) -> Hub.PublishResult {
            lock.withLock { published.append(publication.channel) }
            try? await Task.sleep(for: .milliseconds(50))
            return local.publish(publication, to: target)
        }
    }

    @Test func aBrokerThatAnswersLaterKeepsWebSocketRepliesInOrder() async throws {
        let made = NIOLockedValueBox<SlowBroker?>(nil)
        try await TestNode.with(makeBroker: { hub, recipients in
            let broker = SlowBroker(hub: hub, recipients: recipients)
            made.withLockedValue { $0 = broker }
            return broker
        }) { node in
            let subscriber = try await node.client()
            try await subscriber.subscribe("system_status")
            let admin = try await node.client(token: try await node.token("ops", role: .admin))
            let frames = [
                #"{"type":"publish","channel":"system_status","event":"s","data":1,"id":1}"#,
                #"{"type":"ping","id":2}"#,
                #"{"type":"publish","channel":"system_status","event":"s","data":2,"id":3}"#,
            ].flatMap { Array(WireParser.clientFrame(opcode: 0x1, payload: Array($0.utf8)).readableBytesView) }
            try await admin.socket.sendRaw(frames)
            let replies = [try await admin.next(), try await admin.next(), try await admin.next()]
            #expect(replies.map { $0["id"] as? Int } == [1, 2, 3], "replies in request order: \(replies)")
            #expect(replies.map { $0["type"] as? String } == ["published", "pong", "published"])
            #expect(replies[0]["seq"] as? Int == 1 && replies[2]["seq"] as? Int == 2)
            #expect(try await subscriber.next()["data"] as? Int == 1)
            #expect(try await subscriber.next()["data"] as? Int == 2)
            // The API goes through the broker too.
            let body = #"{"userId":"bob","event":"fill","data":{}}"#
            let reply = try await node.request("POST", "/api/v1/websocket/broadcast", token: try await node.token("ops", role: .admin), body: body)
            #expect(reply.status == 200 && reply.json["channel"] as? String == "user:bob")
            #expect(made.withLockedValue { $0?.channels } == ["system_status", "system_status", "user:bob"])
            await subscriber.close()
            await admin.close()
        }
    }
}
