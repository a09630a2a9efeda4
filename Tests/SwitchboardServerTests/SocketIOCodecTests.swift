import NIOCore
import SwitchboardCore
import Testing

@testable import SwitchboardServer

/// The Socket.IO codec (SPEC §9): deliveries encoded from the message's fields, once per publication.
@Suite struct SocketIOCodecTests {
    private func message(_ publication: Publication, seq: UInt64 = 7, global: Bool = false) -> Delivery {
        Delivery.message(Message(publication, seq: seq, timestampMs: 1_700_000_000_123, global: global), conflationKey: nil)
    }

    @Test func aMessageBecomesAnEventNamedByItsEvent() {
        let delivery = message(Publication(channel: "market_data:AAPL", event: "quote", data: #"{"price":1.5,"seq":"x","ts":[1]}"#))
        #expect(String(buffer: SocketIOCodec.messagePacket(of: delivery))
            == #"42["quote",{"channel":"market_data:AAPL","data":{"price":1.5,"seq":"x","ts":[1]},"seq":7,"ts":1700000000123}]"#)
    }

    @Test func escapedStringsAndGlobalMessagesKeepTheirText() {
        let escaped = message(Publication(channel: "user:a\"b", event: #"we"ird,"event":"#, data: #""\",\"data\":""#))
        let text = String(buffer: SocketIOCodec.messagePacket(of: escaped))
        #expect(text == #"42["we\"ird,\"event\":",{"channel":"user:a\"b","data":"\",\"data\":","seq":7,"ts":1700000000123}]"#)
        let global = message(Publication(channel: "ignored", event: "notice", data: "1"), global: true)
        #expect(String(buffer: SocketIOCodec.messagePacket(of: global)) == #"42["notice",{"channel":null,"data":1,"seq":7,"ts":1700000000123}]"#)
    }

    @Test func theFrameIsBuiltOnceAndSharedByEveryRecipient() {
        let delivery = message(Publication(channel: "admin", event: "e", data: String(repeating: "9", count: 300)))
        var encodings = 0
        let frames = (0..<3).map { _ in
            delivery.frame(.socketIO) { delivery in
                encodings += 1
                return WebSocketWireFrame.frame(.text, payload: delivery.message.map(SocketIOCodec.messagePacket) ?? ByteBuffer())
            }
        }
        // Every later caller got the first caller's buffer: the same storage, not equal copies.
        #expect(encodings == 1)
        let addresses = (frames + [SocketIOCodec.messageFrame(of: delivery)]).map { frame in
            frame.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        }
        #expect(Set(addresses).count == 1)
        // A 126-extended-length text frame whose payload is the packet.
        let frame = SocketIOCodec.messageFrame(of: delivery)
        #expect(frame.getInteger(at: frame.readerIndex, as: UInt8.self) == 0x81)
        #expect(frame.getInteger(at: frame.readerIndex + 1, as: UInt8.self) == 126)
        #expect(WebSocketWireFrame.payload(of: frame) == SocketIOCodec.messagePacket(of: delivery))
    }

    @Test func repliesAreAcksWithTheirIdAndEventsWithout() {
        let ack = SocketIOCodec.encode(.subscribed(channel: "market_data:A", epoch: "e1", recovered: true), id: .int(12))
        #expect(String(buffer: ack.payload).hasPrefix("4312["))
        #expect(String(buffer: ack.payload).contains(#""ok":true"#))
        let error = SocketIOCodec.encode(.error(.forbidden, "no"), id: .int(3))
        #expect(String(buffer: error.payload).hasPrefix("433["))
        #expect(String(buffer: error.payload).contains(#""ok":false"#))
        #expect(String(buffer: error.payload).contains(#""code":"FORBIDDEN""#))
        let unsolicited = SocketIOCodec.encode(.unsubscribed(channel: "user:x"), id: nil)
        #expect(String(buffer: unsolicited.payload) == #"42["unsubscribed",{"channel":"user:x"}]"#)
    }
}
