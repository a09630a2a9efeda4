import CompressNIO
import Foundation
import NIOCore
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// permessage-deflate (SPEC §12, RFC 7692): negotiated per client, each publication compressed once and shared,
/// client messages inflated within max-message-bytes.
@Suite struct CompressionTests {
    static let offer = ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")

    /// A quote as the demo feed publishes it, padded past the 256-byte minimum.
    static let quote = #"{"symbol":"AAPL","bid":189.42,"ask":189.44,"last":189.43,"volume":48213377,"open":187.10,"high":190.02,"low":186.95,"change":1.24,"changePercent":0.66,"exchange":"XNAS","currency":"USD","venue":"consolidated","halted":false,"sequence":918273,"updatedAt":"2026-12-02T10:15:30.123Z"}"#

    @Test func negotiationAcceptsPlainAndParameterisedOffersAndDeclinesTheRest() {
        let answer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        #expect(PerMessageDeflate.response(toOffers: ["permessage-deflate"]) == answer)
        #expect(PerMessageDeflate.response(toOffers: ["permessage-deflate; client_max_window_bits"]) == answer)
        #expect(PerMessageDeflate.response(toOffers: ["Permessage-Deflate; client_max_window_bits=10; server_no_context_takeover"]) == answer)
        #expect(PerMessageDeflate.response(toOffers: ["permessage-deflate; server_max_window_bits=15"]) == answer + "; server_max_window_bits=15")
        // A smaller server window cannot be honoured by the shared compressor: the next offer is taken instead.
        #expect(PerMessageDeflate.response(toOffers: ["permessage-deflate; server_max_window_bits=10, permessage-deflate"]) == answer)
        #expect(PerMessageDeflate.response(toOffers: ["permessage-deflate; server_max_window_bits=10"]) == nil)
        for refused in [
            "x-webkit-deflate-frame", "permessage-deflate; unknown", "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=08", "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover", "permessage-deflate;;", "",
        ] {
            #expect(PerMessageDeflate.response(toOffers: [refused]) == nil, "\(refused)")
        }
    }

    @Test func aPublicationIsCompressedOnceAndSharedByEveryLoop() throws {
        let delivery = Delivery.message(
            Message(channel: "market_data:AAPL", event: "quote", data: ByteBuffer(string: Self.quote), seq: 3, timestampMs: 1), conflationKey: nil)
        let first = try #require(MessageDeflater(minimumBytes: 256))
        let second = try #require(MessageDeflater(minimumBytes: 256))
        // Two loops' lanes (each with its own compressor) and a drain: one buffer, the same storage.
        var counted = CompressedBytes()
        let frames = [
            LaneBatch([delivery], asOneBatchFrame: false, deflater: first).frames,
            LaneBatch([delivery], asOneBatchFrame: false, deflater: second).frames,
            first.frame(of: delivery, counting: &counted),
        ]
        let addresses = Set(frames.map { frame in frame.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) } })
        #expect(addresses.count == 1)
        #expect(WebSocketWireFrame.isCompressed(frames[0]))
        #expect(try Self.inflate(Array(WebSocketWireFrame.payload(of: frames[0]).readableBytesView)) == String(buffer: delivery.payload))
        #expect(String(buffer: delivery.payload).contains(Self.quote))
        // A payload under the minimum goes as the plain frame itself.
        let small = Delivery.message(Message(channel: "c", event: "e", data: ByteBuffer(string: #"{"a":1}"#), seq: 4, timestampMs: 1), conflationKey: nil)
        let plain = first.frame(of: small, counting: &counted)
        #expect(!WebSocketWireFrame.isCompressed(plain))
        #expect(plain == small.frame)
    }

    @Test func compressingAndPlainClientsGetTheSameMessagesWithTheSameSeq() async throws {
        try await TestNode.with({ $0.compression = true }) { node in
            let socket = try await TestWebSocket.open(port: node.port, headers: [Self.offer])
            #expect(try Self.parse(try await socket.nextText())["type"] as? String == "welcome")
            let compressing = TestClient(socket: socket, welcomeText: "")
            let plain = try await node.client()
            try await compressing.subscribe("system_status")
            try await plain.subscribe("system_status")
            let admin = try await node.token("ops", role: .admin)
            for data in [Self.quote, #"{"small":true}"#] {
                let response = try await node.request(
                    "POST", "/api/v1/websocket/broadcast", token: admin,
                    body: #"{"channel":"system_status","event":"quote","data":\#(data)}"#)
                #expect(response.status == 200, "\(response.body)")
            }
            var compressedFrames = 0
            for _ in 0..<2 {
                let frame = try await Self.nextDataFrame(socket)
                let text = frame.compressed ? try Self.inflate(frame.payload) : frame.text
                if frame.compressed { compressedFrames += 1 }
                let expected = try await plain.socket.nextText()
                #expect(text == expected)
            }
            #expect(compressedFrames == 1)
            let stats = try await node.request("GET", "/api/v1/websocket/stats", token: admin).json
            let bytes = try #require(stats["bytes"] as? [String: Any])
            let compressedOut = try #require(bytes["compressedOut"] as? Int)
            let raw = try #require(bytes["compressedRaw"] as? Int)
            #expect(compressedOut > 0 && compressedOut * 10 < raw * 8, "\(bytes)")
            await compressing.close()
            await plain.close()
        }
    }

    @Test func theUpgradeAnswerNamesTheExtensionOnlyWhenCompressionIsOn() async throws {
        try await TestNode.with({ $0.compression = true }) { node in
            let socket = try await TestWebSocket.open(port: node.port, headers: [Self.offer])
            #expect(Self.extensions(of: socket) == ["permessage-deflate; server_no_context_takeover; client_no_context_takeover"])
            await socket.close()
            // A client that offers nothing (or nothing acceptable) is answered without the extension.
            let plain = try await TestWebSocket.open(port: node.port, headers: [("Sec-WebSocket-Extensions", "x-webkit-deflate-frame")])
            #expect(Self.extensions(of: plain).isEmpty)
            await plain.close()
        }
        try await TestNode.with { node in
            // Off by default: the client's offer is ignored, and a compressed frame from it is a protocol error.
            let socket = try await TestWebSocket.open(port: node.port, headers: [Self.offer])
            #expect(Self.extensions(of: socket).isEmpty)
            _ = try await socket.nextText()
            try await socket.sendRaw(try Self.compressedClientFrame(#"{"type":"ping","id":1}"#))
            #expect(try await socket.closeFrame()?.closeCode == 1002)
        }
    }

    @Test func compressedClientMessagesAreInflatedAndBombsClosedWith1009() async throws {
        try await TestNode.with({
            $0.compression = true
            $0.maxMessageBytes = 4096
        }) { node in
            let socket = try await TestWebSocket.open(port: node.port, headers: [Self.offer])
            _ = try await socket.nextText()
            try await socket.sendRaw(try Self.compressedClientFrame(#"{"type":"ping","id":41}"#))
            let pong = try Self.parse(try await socket.nextText())
            #expect(pong["type"] as? String == "pong" && pong["id"] as? Int == 41, "\(pong)")
            // 1 MiB of spaces compresses to about a kilobyte: within the frame limit, far past the message limit.
            let bomb = try Self.compressedClientFrame("[" + String(repeating: " ", count: 1_048_576) + "]")
            #expect(bomb.count < 4096)
            try await socket.sendRaw(bomb)
            #expect(try await socket.closeFrame()?.closeCode == 1009)

            let corrupt = try await TestWebSocket.open(port: node.port, headers: [Self.offer])
            _ = try await corrupt.nextText()
            var garbage = WireParser.clientFrame(opcode: 0x1, payload: [0xFF, 0xFF, 0xFF, 0x01, 0x02])
            garbage.setInteger(garbage.getInteger(at: 0, as: UInt8.self)! | 0x40, at: 0)
            try await corrupt.sendRaw(Array(garbage.readableBytesView))
            #expect(try await corrupt.closeFrame()?.closeCode == 1002)
            // RSV1 on a control frame is refused too (RFC 7692 §6.1).
            let control = try await TestWebSocket.open(port: node.port, headers: [Self.offer])
            _ = try await control.nextText()
            var ping = WireParser.clientFrame(opcode: 0x9, payload: [])
            ping.setInteger(ping.getInteger(at: 0, as: UInt8.self)! | 0x40, at: 0)
            try await control.sendRaw(Array(ping.readableBytesView))
            #expect(try await control.closeFrame()?.closeCode == 1002)
        }
    }

    @Test func socketIOOverWebSocketCompressesToo() async throws {
        try await TestNode.with({ $0.compression = true }) { node in
            let socket = try await TestWebSocket.open(port: node.port, path: "/socket.io/?EIO=4&transport=websocket", headers: [Self.offer])
            #expect(Self.extensions(of: socket).count == 1)
            #expect(try await socket.nextText().hasPrefix("0{"))
            try await socket.send("40")
            #expect(try await socket.nextText().hasPrefix("40{"))
            try await socket.send(#"420["subscribe","system_status"]"#)
            #expect(try await socket.nextText().hasPrefix("430["))
            // The client's own packets may come compressed: an ack proves the server inflated this one.
            try await socket.sendRaw(try Self.compressedClientFrame(#"421["subscribe","admin"]"#))
            let refused = try await socket.nextText()
            #expect(refused.hasPrefix("431[") && refused.contains("FORBIDDEN"), "\(refused)")
            let admin = try await node.token("ops", role: .admin)
            let response = try await node.request(
                "POST", "/api/v1/websocket/broadcast", token: admin, body: #"{"channel":"system_status","event":"quote","data":\#(Self.quote)}"#)
            #expect(response.status == 200)
            let frame = try await Self.nextDataFrame(socket)
            #expect(frame.compressed)
            let packet = try Self.inflate(frame.payload)
            #expect(packet.hasPrefix(#"42["quote",{"channel":"system_status","data":{"#) && packet.contains(#""symbol":"AAPL""#), "\(packet)")
            await socket.close()
        }
    }

    // MARK: Helpers

    static func parse(_ text: String) throws -> [String: Any] { try TestClient.parse(text) }

    static func extensions(of socket: TestWebSocket) -> [String] {
        socket.handshakeHeaders.filter { $0.0.lowercased() == "sec-websocket-extensions" }.map(\.1)
    }

    static func nextDataFrame(_ socket: TestWebSocket) async throws -> ServerFrame {
        while true {
            let frame = try await socket.nextFrame()
            if frame.opcode == 0x1 { return frame }
            #expect(frame.opcode != 0x8, "closed: \(frame.closeCode.map(String.init) ?? "-")")
        }
    }

    /// Inflates a permessage-deflate payload as a client does (RFC 7692 §7.2.2).
    static func inflate(_ payload: [UInt8]) throws -> String {
        let decompressor = try ZlibDecompressor(algorithm: .deflate)
        var input = ByteBuffer(bytes: payload + [0x00, 0x00, 0xFF, 0xFF])
        var output = ByteBuffer()
        output.reserveCapacity(payload.count * 50 + 1024)
        do {
            try decompressor.inflate(from: &input, to: &output)
        } catch let error as CompressNIOError where error == .inputBufferOverflow {}
        return String(buffer: output)
    }

    /// A masked text frame with `text` compressed and RSV1 set, as a client that negotiated deflate sends it.
    static func compressedClientFrame(_ text: String) throws -> [UInt8] {
        let compressor = try ZlibCompressor(algorithm: .deflate)
        var input = ByteBuffer(string: text)
        var output = ByteBuffer()
        output.reserveCapacity(compressor.maxSize(from: input))
        try compressor.deflate(from: &input, to: &output, flush: .sync)
        let body = Array(output.readableBytesView.dropLast(4))  // the 00 00 ff ff tail (RFC 7692 §7.2.1)
        var frame = WireParser.clientFrame(opcode: 0x1, payload: body)
        frame.setInteger(frame.getInteger(at: 0, as: UInt8.self)! | 0x40, at: 0)
        return Array(frame.readableBytesView)
    }
}
