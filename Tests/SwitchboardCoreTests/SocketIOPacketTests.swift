import NIOCore
import SwitchboardCore
import Testing

/// Engine.IO 4 and Socket.IO 5 packets (SPEC §9), as the protocol documents spell them.
@Suite struct SocketIOPacketTests {
    static func text(_ packet: EnginePacket) -> String {
        var buffer = ByteBuffer()
        packet.write(into: &buffer)
        return String(buffer: buffer)
    }

    static func text(_ packet: SocketPacket) -> String {
        var buffer = ByteBuffer()
        packet.write(into: &buffer)
        return String(buffer: buffer)
    }

    @Test func enginePacketsRoundTrip() throws {
        let open = EnginePacket(.open, text: #"{"sid":"abc","upgrades":["websocket"],"pingInterval":25000}"#)
        #expect(Self.text(open) == #"0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000}"#)
        for text in ["2", "3", "2probe", "3probe", "5", "6", "1", #"42["subscribe","market_data:AAPL"]"#] {
            let packet = try EnginePacket.decode(text: Array(text.utf8))
            #expect(Self.text(packet) == text)
        }
        #expect(try EnginePacket.decode(text: Array("2probe".utf8)) == EnginePacket(.ping, text: "probe"))
        #expect(try EnginePacket.decode(text: Array("4hello".utf8)).text == "hello")
    }

    @Test func badEnginePacketsAreRefused() {
        for text in ["", "7", "9x", "x", "/"] {
            #expect(throws: EngineIOError.self, "\(text)") { try EnginePacket.decode(text: Array(text.utf8)) }
        }
    }

    @Test func pollingPayloadsSplitOnTheRecordSeparator() throws {
        let body = Array("4hello\u{1e}2\u{1e}bAQID\u{1e}4".utf8)
        let packets = try EnginePayload.decode(body, maxBytes: 1_000)
        #expect(packets == [EnginePacket(.message, text: "hello"), EnginePacket(.ping), .binary([1, 2, 3]), EnginePacket(.message)])
        var encoded = ByteBuffer()
        EnginePayload.encode(packets, into: &encoded)
        #expect(Array(encoded.readableBytesView) == body, "and back, binary as b + base64")
        #expect(throws: EngineIOError.self) { try EnginePayload.decode(body, maxBytes: 10) }
        #expect(throws: EngineIOError.self) { try EnginePayload.decode(Array("bA=Q\u{1e}4x".utf8), maxBytes: 100) }
        let flood = Array(repeating: "2", count: 300).joined(separator: "\u{1e}")
        #expect(throws: EngineIOError.self, "a bounded number of packets per body") {
            try EnginePayload.decode(Array(flood.utf8), maxBytes: 10_000)
        }
        #expect(throws: EngineIOError.self, "an empty record is not a packet") { try EnginePayload.decode(Array("4a\u{1e}".utf8), maxBytes: 100) }
    }

    @Test func socketPacketsDecodeAsTheProtocolSpellsThem() throws {
        let connect = try SocketPacket.decode(Array(#"0{"token":"t"}"#.utf8))
        #expect(connect == SocketPacket(.connect, payload: .object(["token": .string("t")])))
        #expect(try SocketPacket.decode(Array("0".utf8)) == SocketPacket(.connect))
        let event = try SocketPacket.decode(Array(#"212["subscribe",{"channel":"market_data:AAPL","since":4}]"#.utf8))
        #expect(event.ackId == 12 && event.namespace == "/")
        #expect(event.event?.name == "subscribe" && event.event?.arguments.first?["since"] == .int(4))
        let elsewhere = try SocketPacket.decode(Array("0/admin,".utf8))
        #expect(elsewhere.kind == .connect && elsewhere.namespace == "/admin")
        #expect(try SocketPacket.decode(Array("0/admin".utf8)).namespace == "/admin")
        let namespaced = try SocketPacket.decode(Array(#"2/chat,7["x"]"#.utf8))
        #expect(namespaced.namespace == "/chat" && namespaced.ackId == 7 && namespaced.event?.name == "x")
        #expect(try SocketPacket.decode(Array("1".utf8)) == SocketPacket(.disconnect))
        #expect(try SocketPacket.decode(Array("33[]".utf8)) == SocketPacket(.ack, ackId: 3, payload: .array([])))
    }

    @Test func socketPacketsEncodeAsTheClientExpects() {
        #expect(Self.text(SocketPacket(.connect, payload: .object(["sid": .string("s1")]))) == #"0{"sid":"s1"}"#)
        #expect(Self.text(SocketPacket(.ack, ackId: 12, payload: .array([.object(["ok": .bool(true)])]))) == #"312[{"ok":true}]"#)
        #expect(Self.text(SocketPacket(.connectError, namespace: "/x", payload: .object(["message": .string("Invalid namespace")])))
            == #"4/x,{"message":"Invalid namespace"}"#)
        #expect(Self.text(SocketPacket(.disconnect)) == "1")
    }

    @Test func badSocketPacketsAreRefusedWithAReason() {
        let bad = [
            "", "9", "x", #"2{"not":"an array"}"#, "2[]", "2[1]", #"0["x"]"#, #"1{"a":1}"#, #"3{"a":1}"#, "2[", #"51-["x",{"_placeholder":true}]"#,
            "29007199254740993[\"x\"]", "0/" + String(repeating: "n", count: 300) + ",",
        ]
        for text in bad {
            #expect(throws: SocketIOError.self, "\(text.prefix(40))") { try SocketPacket.decode(Array(text.utf8)) }
        }
    }

    @Test func reservedEventNamesAreKnown() {
        for name in ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"] {
            #expect(SocketPacket.reservedEventNames.contains(name))
        }
        #expect(!SocketPacket.reservedEventNames.contains("quote"))
    }
}
