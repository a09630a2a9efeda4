public import NIOCore

/// Server-to-client WebSocket frames, framed once and written as they are.
///
/// RFC 6455 §5.1: a server never masks its frames, so a frame's bytes are the same for every recipient;
/// a publish is framed once and the same buffer is written to every socket.
public enum WebSocketWireFrame {
    public enum Opcode: UInt8, Sendable {
        case text = 0x1
        case binary = 0x2
        case close = 0x8
        case ping = 0x9
        case pong = 0xA
    }

    /// The frame header for a final, unmasked frame of `length` bytes; `compressed` sets RSV1, which marks a
    /// permessage-deflate message (RFC 7692 §6).
    public static func writeHeader(opcode: Opcode, length: Int, into buffer: inout ByteBuffer, compressed: Bool = false) {
        buffer.writeInteger(0x80 | (compressed ? 0x40 : 0) | opcode.rawValue)
        switch length {
        case ..<126:
            buffer.writeInteger(UInt8(length))
        case ..<65536:
            buffer.writeInteger(UInt8(126))
            buffer.writeInteger(UInt16(length))
        default:
            buffer.writeInteger(UInt8(127))
            buffer.writeInteger(UInt64(length))
        }
    }

    /// A complete frame carrying `payload`.
    public static func frame(_ opcode: Opcode, payload: ByteBuffer, allocator: ByteBufferAllocator = .init()) -> ByteBuffer {
        var frame = allocator.buffer(capacity: payload.readableBytes + 10)
        writeHeader(opcode: opcode, length: payload.readableBytes, into: &frame)
        frame.writeImmutableBuffer(payload)
        return frame
    }

    /// The payload of a frame written by this type (a view of the same storage).
    public static func payload(of frame: ByteBuffer) -> ByteBuffer {
        guard let second = frame.getInteger(at: frame.readerIndex + 1, as: UInt8.self) else { return ByteBuffer() }
        let header =
            switch second & 0x7F {
            case 126: 4
            case 127: 10
            default: 2
            }
        return frame.getSlice(at: frame.readerIndex + header, length: frame.readableBytes - header) ?? ByteBuffer()
    }

    /// Whether a frame written by this type is compressed (RSV1).
    public static func isCompressed(_ frame: ByteBuffer) -> Bool {
        (frame.getInteger(at: frame.readerIndex, as: UInt8.self) ?? 0) & 0x40 != 0
    }

    /// A close frame with `code` and a UTF-8 `reason` (cut to fit the 125-byte control-frame limit).
    public static func close(code: UInt16, reason: String) -> ByteBuffer {
        var payload = ByteBuffer()
        payload.writeInteger(code)
        payload.writeBytes(reason.utf8.prefix(123))
        return frame(.close, payload: payload)
    }
}
