import Foundation
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// SPEC §9: event names Socket.IO clients reserve are refused at publish on every path, since a Socket.IO
/// subscriber would drop its connection on receiving one.
@Suite struct ReservedEventNameTests {
    @Test func reservedEventNamesAreRefusedOverHTTPBatchesAndWebSocket() async throws {
        try await TestNode.with { node in
            let admin = try await node.token("ops", role: .admin)
            for name in ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"] {
                let single = try await node.request(
                    "POST", "/api/v1/websocket/broadcast", token: admin, body: #"{"channel":"system_status","event":"\#(name)","data":1}"#)
                #expect(single.status == 400 && single.errorCode == "BAD_REQUEST", "\(name): \(single.body)")
                #expect(single.body.contains("reserved"))
            }
            let batch = try await node.request(
                "POST", "/api/v1/websocket/broadcast/batch", token: admin,
                body: #"{"messages":[{"channel":"system_status","event":"ok","data":1},{"channel":"system_status","event":"connect","data":2}]}"#)
            #expect(batch.status == 400, "one reserved name rejects the whole batch: \(batch.body)")
            let details = (batch.json["error"] as? [String: Any])?["details"] as? [[String: Any]]
            #expect(details?.first?["index"] as? Int == 1)
            let client = try await node.client(token: admin)
            let reply = try await client.request(["type": "publish", "id": 3, "channel": "system_status", "event": "disconnect", "data": 1])
            #expect(reply["type"] as? String == "error" && reply["code"] as? String == "BAD_REQUEST" && reply["id"] as? Int == 3, "\(reply)")
            let fine = try await client.request(["type": "publish", "id": 4, "channel": "system_status", "event": "connected", "data": 1])
            #expect(fine["type"] as? String == "published", "a name that only looks like one is fine: \(fine)")
            #expect(node.node.statistics.snapshot().published == 1, "nothing reserved went out")
            await client.close()
        }
    }
}
