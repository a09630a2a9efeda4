import Foundation
import NIOCore
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// Issue 33's defects of the connection layer on `/ws`, each reproduced against a live node.
@Suite struct ConnectionLayerTests {
    static func frame(_ text: String, opcode: UInt8 = 0x1, fin: Bool = true) -> [UInt8] {
        Array(WireParser.clientFrame(opcode: opcode, payload: Array(text.utf8), fin: fin).readableBytesView)
    }

    /// Defect 2: sockets that send the upgrade, an `auth`, five `subscribe`s and then FIN in one write used to
    /// leave connections registered under the user (and counted as recipients) forever.
    @Test func closingDuringAuthLeavesNoGhostConnection() async throws {
        try await TestNode.with { node in
            let token = try await node.token("ghost")
            let subscribes = ["a", "b", "c", "d", "e"].map { Self.frame(#"{"type":"subscribe","channel":"market_data:\#($0)"}"#) }
            let burst = Array(DirectUpgradeTests.request().utf8) + Self.frame(#"{"type":"auth","token":"\#(token)"}"#)
                + Array(subscribes.joined())
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<50 {
                    group.addTask {
                        let socket = try await ByteCollector.connect(port: node.port)
                        try await socket.send(burst)
                        await socket.close()
                    }
                }
                try await group.waitForAll()
            }
            // Every upgrade was answered (the node read each burst), then everything is gone within 1 s.
            try await waitUntil { node.node.statistics.snapshot().upgradesAccepted >= 50 }
            try await waitUntil(timeout: .seconds(1)) {
                node.node.connections.count == 0 && node.node.connections.connections(ofUser: "ghost").isEmpty
                    && node.node.hub.channelSummaries().allSatisfy { $0.subscribers == 0 }
            }
            // Token checks that finish after the close must not bring anything back.
            try await Task.sleep(for: .milliseconds(300))
            #expect(node.node.connections.count == 0)
            #expect(node.node.connections.connections(ofUser: "ghost").isEmpty)
            #expect(node.node.hub.channelSummaries().allSatisfy { $0.subscribers == 0 }, "\(node.node.hub.channelSummaries())")
            let admin = try await node.token("root", role: .admin)
            let broadcast = try await node.request(
                "POST", "/api/v1/websocket/broadcast", token: admin, body: #"{"userId":"ghost","event":"x","data":1}"#)
            #expect(broadcast.json["recipients"] as? Int == 0, "\(broadcast.body)")
            // The user's pool (10 by default) is whole.
            var clients: [TestClient] = []
            for _ in 0..<10 { clients.append(try await node.client(token: token)) }
            for client in clients { await client.close() }
        }
    }

    /// Defect 6: RFC 6455 §7.4.1 forbids 1005, 1006 and 1015 on the wire; unassigned codes and a one-byte body are
    /// protocol errors. The answer to such a close frame is 1002, a legal code is echoed.
    static let closeAnswers: [CloseAnswer] = [
        CloseAnswer(body: [0x03, 0xED], answer: 1002),  // 1005
        CloseAnswer(body: [0x03, 0xEE], answer: 1002),  // 1006
        CloseAnswer(body: [0x03, 0xF7], answer: 1002),  // 1015
        CloseAnswer(body: [0x03, 0xE7], answer: 1002),  // 999
        CloseAnswer(body: [0x07, 0xD0], answer: 1002),  // 2000, unassigned
        CloseAnswer(body: [0x03], answer: 1002),  // one byte
        CloseAnswer(body: [0x0F, 0xA0], answer: 4000),
        CloseAnswer(body: [0x03, 0xE9], answer: 1001),
        CloseAnswer(body: [], answer: 1000),
    ]

    struct CloseAnswer: Sendable, CustomTestStringConvertible {
        let body: [UInt8]
        let answer: UInt16
        var testDescription: String { "close \(body) answered \(answer)" }
    }

    @Test(arguments: closeAnswers)
    func theCloseAnswerCarriesOnlyCodesAllowedOnTheWire(_ close: CloseAnswer) async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            try await client.socket.sendFrame(opcode: 0x8, payload: close.body)
            #expect(try await client.closeCode() == close.answer, "close frame \(close.body)")
        }
    }

    /// Defect 7: a text frame without FIN and then endless empty continuation frames used to burn a core
    /// without ever closing. Each frame now costs its header against `max-message-bytes`: closed with 1009.
    @Test func aFloodOfEmptyContinuationFramesIsClosedWith1009() async throws {
        try await TestNode.with({ $0.maxMessageBytes = 4096 }) { node in
            let client = try await node.client()
            try await client.socket.sendRaw(Self.frame("{", fin: false))
            let empty = Self.frame("", opcode: 0x0, fin: false)
            // 4096 / 6 bytes a frame: refused after about 680 frames; 2,000 are sent.
            try await client.socket.sendRaw(Array([[UInt8]](repeating: empty, count: 2_000).joined()))
            #expect(try await client.closeCode(timeout: .seconds(3)) == 1009)
        }
    }

    /// A message in several frames still arrives whole (the per-frame cost leaves room for real fragments).
    @Test func aMessageInManyFragmentsIsStillAccepted() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            let text = #"{"type":"ping","id":7}"#
            var bytes: [UInt8] = []
            for (index, byte) in text.utf8.enumerated() {
                bytes += Array(
                    WireParser.clientFrame(opcode: index == 0 ? 0x1 : 0x0, payload: [byte], fin: index == text.utf8.count - 1).readableBytesView)
            }
            try await client.socket.sendRaw(bytes)
            let reply = try await client.next()
            #expect(reply["type"] as? String == "pong")
            #expect(reply["id"] as? Int == 7)
        }
    }

    /// Defect 1: a client that never reads and streams pings used to grow the node without bound (every pong
    /// written through NIO, outside the outbox and the message rate). Pings count toward the rate now and one
    /// pong at most waits: the flooder is closed with 4008, and a reading subscriber gets every broadcast in order.
    @Test func aPingFloodFromANonReaderIsClosedAndOthersGetEverything() async throws {
        try await TestNode.with { node in
            let subscriber = try await node.client()
            try await subscriber.subscribe("system_status")
            let flooder = try await node.client(receiveBufferBytes: 4096)
            try await flooder.socket.pauseReading()
            let ping = Self.frame("", opcode: 0x9)
            let batch = Array([[UInt8]](repeating: ping, count: 10_000).joined())
            let admin = try await node.token("root", role: .admin)
            let flood = Task {
                for _ in 0..<100 { try await flooder.socket.sendRaw(batch) }
            }
            for seq in 1...20 {
                let reply = try await node.request(
                    "POST", "/api/v1/websocket/broadcast", token: admin, body: #"{"channel":"system_status","event":"s","data":\#(seq)}"#)
                #expect(reply.status == 200)
            }
            for seq in 1...20 {
                let message = try await subscriber.next()
                #expect(message["data"] as? Int == seq, "\(message)")
            }
            try await waitUntil(timeout: .seconds(5)) { node.node.connections.count == 1 }
            _ = try? await flood.value
            #expect(node.node.statistics.snapshot().rateLimited[.messageAbuse, default: 0] >= 1)
        }
    }

    /// Every byte to a client leaves through the one outbound path of ``WebSocketTransport``, and what NIO holds of
    /// it is bounded: past twice `outbound-buffer-bytes` (whatever wrote it, control frames and Engine.IO's own
    /// packets included) the connection is a slow consumer, closed with 4009, and the others are not disturbed.
    @Test func whatNIOHoldsForAClientIsBoundedWhateverWroteIt() async throws {
        let limit = 64 * 1024
        try await TestNode.with({ $0.outboundBufferBytes = limit }) { node in
            let stalled = try await node.client(receiveBufferBytes: 4096)
            let id = try #require(stalled.welcome["connectionId"] as? String)
            let connection = try #require(node.node.connections.connection(id: id) as? WebSocketConnection)
            try await connection.channel.setOption(.socketOption(.so_sndbuf), value: 8192)
            try await stalled.socket.pauseReading()
            let healthy = try await node.client()
            // Frames written on the outbound path directly, as a control frame would be: 64 of 4 KiB, four times
            // the bound; the drains' own back-pressure is not what stops them.
            let frame = WebSocketWireFrame.frame(.text, payload: ByteBuffer(repeating: UInt8(ascii: "x"), count: 4096))
            let heldAtClose = try await connection.eventLoop.submit { () -> Int? in
                for _ in 1...64 {
                    connection.write(frame)
                    if connection.closing { return connection.bytesHeldByNIO }
                }
                return nil
            }.get()
            let held = try #require(heldAtClose, "the connection was not closed")
            // The bound, the frame that passed it and the close frame.
            #expect(held <= 2 * limit + 2 * frame.readableBytes, "NIO held \(held) bytes")
            #expect(node.node.statistics.snapshot().slowConsumerCloses == 1)
            try await waitUntil { node.node.connections.count == 1 }
            #expect(try await healthy.request(["type": "ping"])["type"] as? String == "pong")
        }
    }

    /// Defect 9: a closed connection used to hold its pool slot until the TCP connection ended (up to the 5 s
    /// close grace when the client does not answer the close frame). The slot is given back when the close starts.
    @Test func theSlotIsFreeAsSoonAsTheCloseStarts() async throws {
        try await TestNode.with({ $0.maxConnectionsPerIP = 1 }) { node in
            // A client that never answers the close frame.
            let silent = try await ByteCollector.connect(port: node.port)
            try await silent.send(Array(DirectUpgradeTests.request().utf8))
            _ = try await silent.waitFor(Array("welcome".utf8))
            let connection = try #require(node.node.connections.all.first)
            connection.disconnect(code: .disconnectedByAdmin, reason: "bye")
            _ = try await silent.waitFor([0x88])
            let reopened = ContinuousClock.now
            var outcome = try await node.upgrade()
            while !outcome.isUpgraded && ContinuousClock.now - reopened < .seconds(1) {
                try await Task.sleep(for: .milliseconds(50))
                outcome = try await node.upgrade()
            }
            #expect(outcome.isUpgraded, "the per-IP slot is free within 1 s of the close: \(String(describing: outcome.refusal))")
            await silent.close()
        }
    }
}
