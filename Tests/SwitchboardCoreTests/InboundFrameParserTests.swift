import NIOCore
import SwitchboardCore
import Testing

/// RFC 6455 framing of client bytes, without sockets.
@Suite struct InboundFrameParserTests {
    /// A client frame as RFC 6455 §5.2 lays it out, masked with `key` unless nil.
    private func frame(_ opcode: UInt8, _ payload: [UInt8], fin: Bool = true, key: [UInt8]? = [0x12, 0x34, 0x56, 0x78], rsv: UInt8 = 0) -> [UInt8] {
        var bytes: [UInt8] = [(fin ? 0x80 : 0) | rsv | opcode]
        let maskBit: UInt8 = key == nil ? 0 : 0x80
        switch payload.count {
        case ..<126: bytes.append(maskBit | UInt8(payload.count))
        case ..<65536: bytes += [maskBit | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        default: bytes += [maskBit | 127] + (0..<8).reversed().map { UInt8(truncatingIfNeeded: payload.count >> ($0 * 8)) }
        }
        guard let key else { return bytes + payload }
        return bytes + key + payload.enumerated().map { $0.element ^ key[$0.offset % 4] }
    }

    private func parseAll(_ chunks: [[UInt8]], max: Int = 1 << 20) throws(InboundFrameParser.Failure) -> [InboundFrame] {
        var parser = InboundFrameParser(maxFrameSize: max)
        var frames: [InboundFrame] = []
        for chunk in chunks {
            parser.append(ByteBuffer(bytes: chunk))
            while let frame = try parser.next() { frames.append(frame) }
        }
        return frames
    }

    @Test func framesSplitAtAnyByteComeOutWhole() throws {
        let long = (0..<70_000).map { UInt8(truncatingIfNeeded: $0) }
        let medium = Array(repeating: UInt8(ascii: "m"), count: 300)
        let stream = frame(0x1, Array(#"{"type":"ping"}"#.utf8)) + frame(0x2, medium, fin: false) + frame(0x0, long)
            + frame(0x9, [], key: [0, 0, 0, 0]) + frame(0x1, Array("plain".utf8), key: nil)
        for split in [1, 2, 3, 7, 13, 4096, stream.count] {
            let chunks = stride(from: 0, to: stream.count, by: split).map { Array(stream[$0..<min($0 + split, stream.count)]) }
            let frames = try parseAll(chunks)
            #expect(frames.map(\.opcode) == [0x1, 0x2, 0x0, 0x9, 0x1], "split every \(split) bytes")
            #expect(frames.map(\.fin) == [true, false, true, true, true])
            #expect(frames.map(\.isMasked) == [true, true, true, true, false])
            #expect(String(buffer: frames[0].payload) == #"{"type":"ping"}"#, "unmasked")
            #expect(Array(frames[1].payload.readableBytesView) == medium)
            #expect(Array(frames[2].payload.readableBytesView) == long, "64-bit length")
            #expect(frames[3].payload.readableBytes == 0)
            #expect(String(buffer: frames[4].payload) == "plain")
        }
    }

    @Test func tooLongFrameFailsFromItsHeaderAlone() throws {
        // Only the header of a frame claiming 2^63 bytes: refused before any payload is waited for.
        var header: [UInt8] = [0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0]
        #expect(throws: InboundFrameParser.Failure.tooLarge) { try parseAll([header]) }
        header = [0x81, 0xFE, 0x04, 0x01]  // 1025 bytes against a limit of 1024
        #expect(throws: InboundFrameParser.Failure.tooLarge) { try parseAll([header], max: 1024) }
        #expect(try parseAll([frame(0x1, Array(repeating: 0x61, count: 1024))], max: 1024).count == 1, "the limit itself is fine")
    }

    @Test func framingViolationsAreRefused() throws {
        let cases: [([UInt8], String)] = [
            (frame(0x9, [1], fin: false), "fragmented control frame"),
            (frame(0x8, Array(repeating: 0, count: 126)), "control frame longer than 125 bytes"),
            (frame(0x1, [0x61], rsv: 0x40), "reserved bits set without an extension"),
        ]
        for (bytes, reason) in cases {
            #expect(throws: InboundFrameParser.Failure.protocolViolation(reason)) { try parseAll([bytes]) }
        }
    }

    @Test func incompleteFrameWaitsAndResetDropsIt() throws {
        var parser = InboundFrameParser(maxFrameSize: 1024)
        let bytes = frame(0x1, Array("hello".utf8))
        parser.append(ByteBuffer(bytes: bytes.dropLast()))
        #expect(try parser.next() == nil)
        parser.reset()
        parser.append(ByteBuffer(bytes: bytes))
        #expect(try parser.next().map { String(buffer: $0.payload) } == "hello")
        #expect(try parser.next() == nil)
    }
}
