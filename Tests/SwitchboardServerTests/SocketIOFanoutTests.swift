import Foundation
import NIOCore
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// Socket.IO sessions on a WebSocket are reached by their loop's channel lanes like native connections
/// (SPEC §9): the shared Socket.IO frame written straight to the socket, in order, beside native recipients.
@Suite struct SocketIOFanoutTests {
    @Test func lanesWriteTheSharedSocketIOFrameStraightToWebSocketSessions() async throws {
        try await TestNode.with { node in
            let native = try await node.client()
            try await native.subscribe("system_status")
            var sessions: [(socket: TestWebSocket, client: SocketIOClient)] = []
            for _ in 0..<2 {
                let socket = try await TestWebSocket.open(port: node.port, path: "/socket.io/?EIO=4&transport=websocket")
                #expect(try await Self.nextPacket(socket).hasPrefix("0{"))
                try await socket.send("40")
                let connect = try await Self.nextPacket(socket)
                let sid = try #require(try TestClient.parse(String(connect.dropFirst(2)))["sid"] as? String)
                try await socket.send(#"420["subscribe","system_status"]"#)
                #expect(try await Self.nextPacket(socket).hasPrefix("430["))
                let client = try #require(node.node.connections.connection(id: sid) as? SocketIOClient)
                sessions.append((socket, client))
            }
            for n in 1...20 { _ = try await node.node.publisher.publish(Publication(channel: "system_status", event: "tick", data: "\(n)")) }
            var nativeSeqs: [Int] = []
            for _ in 1...20 {
                let message = try await native.next()
                nativeSeqs.append(message["seq"] as? Int ?? -1)
            }
            for (socket, client) in sessions {
                var seqs: [Int] = []
                for n in 1...20 {
                    let packet = try await Self.nextPacket(socket)
                    #expect(packet.hasPrefix(#"42["tick",{"channel":"system_status","data":\#(n),"#), "\(packet)")
                    let body = try #require(packet.range(of: #""seq":"#)).upperBound
                    seqs.append(Int(packet[body...].prefix { $0.isNumber }) ?? -1)
                }
                #expect(seqs == nativeSeqs)
                // Every message went through the lane's direct write (none through the session's outbox).
                #expect(try await client.eventLoop.submit { client.laneWrites }.get() == 20)
                #expect(try await client.describe().messagesOut >= 20)
                await socket.close()
            }
        }
    }

    /// The next Engine.IO packet, skipping the server's pings.
    static func nextPacket(_ socket: TestWebSocket) async throws -> String {
        while true {
            let text = try await socket.nextText()
            if text != "2" { return text }
        }
    }
}
