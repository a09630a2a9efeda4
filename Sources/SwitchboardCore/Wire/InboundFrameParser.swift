public import NIOCore

/// One WebSocket frame from a client, its payload already unmasked (RFC 6455 §5.2, §5.3).
public struct InboundFrame: Sendable {
    public let fin: Bool
    /// The 4-bit opcode (RFC 6455 §5.2); reserved values are passed on for the connection to refuse.
    public let opcode: UInt8
    /// Whether the client masked the frame (RFC 6455 §5.1: a server must close the connection if not).
    public let isMasked: Bool
    /// RSV1 on the first frame of a message: the message is compressed (RFC 7692 §6, permessage-deflate).
    public let isCompressed: Bool
    public let payload: ByteBuffer

    public static let continuation: UInt8 = 0x0
    public static let text: UInt8 = 0x1
    public static let binary: UInt8 = 0x2
    public static let close: UInt8 = 0x8
    public static let ping: UInt8 = 0x9
    public static let pong: UInt8 = 0xA
}

/// Splits the bytes a client sends into WebSocket frames, incrementally and without copying whole frames.
///
/// Written here instead of using NIOWebSocket's `WebSocketFrameDecoder` because that decoder only runs inside
/// a `ByteToMessageHandler`, a pipeline stage of its own that keeps about 600 bytes of buffers and bookkeeping
/// per connection; this parser is a field of the connection and holds bytes only while a frame is incomplete.
/// It enforces what the decoder did (frame length limit, control frames final and at most 125 bytes) and
/// also refuses RSV bits (RFC 6455 §5.2), except RSV1 on the first frame of a data message once
/// permessage-deflate was negotiated (RFC 7692 §6).
public struct InboundFrameParser {
    /// Why the byte stream cannot go on; the connection closes with the matching code.
    public enum Failure: Error, Equatable {
        /// A frame longer than the limit (close 1009).
        case tooLarge
        /// A violation of RFC 6455 framing (close 1002), with the reason sent in the close frame.
        case protocolViolation(String)
    }

    /// The largest payload accepted in one frame.
    public let maxFrameSize: Int
    /// permessage-deflate was negotiated: RSV1 marks a compressed message.
    public let acceptsCompressedMessages: Bool
    /// Received bytes not yet parsed into a frame (nil when there are none, so an idle connection holds nothing).
    private var pending: ByteBuffer?

    public init(maxFrameSize: Int, acceptsCompressedMessages: Bool = false) {
        self.maxFrameSize = maxFrameSize
        self.acceptsCompressedMessages = acceptsCompressedMessages
    }

    /// Adds bytes read from the socket.
    public mutating func append(_ bytes: ByteBuffer) {
        if var buffered = pending {
            pending = nil  // keep the buffer uniquely referenced while it grows
            var bytes = bytes
            buffered.writeBuffer(&bytes)
            pending = buffered
        } else if bytes.readableBytes > 0 {
            pending = bytes
        }
    }

    /// The next complete frame, or nil until more bytes arrive.
    public mutating func next() throws(Failure) -> InboundFrame? {
        guard var buffer = pending else { return nil }
        let start = buffer.readerIndex
        guard let first = buffer.getInteger(at: start, as: UInt8.self),
            let second = buffer.getInteger(at: start + 1, as: UInt8.self)
        else { return nil }
        let opcode = first & 0x0F
        let fin = first & 0x80 != 0
        guard first & 0x30 == 0 else { throw .protocolViolation("reserved bits set without an extension") }
        let isCompressed = first & 0x40 != 0
        if isCompressed {
            guard acceptsCompressedMessages else { throw .protocolViolation("reserved bits set without an extension") }
            // RFC 7692 §6.1: RSV1 only on the first frame of a text or binary message.
            guard opcode == InboundFrame.text || opcode == InboundFrame.binary else {
                throw .protocolViolation("RSV1 set on a control or continuation frame")
            }
        }
        var headerLength = 2
        var length = UInt64(second & 0x7F)
        if length == 126 {
            guard let extended = buffer.getInteger(at: start + 2, as: UInt16.self) else { return nil }
            length = UInt64(extended)
            headerLength += 2
        } else if length == 127 {
            guard let extended = buffer.getInteger(at: start + 2, as: UInt64.self) else { return nil }
            length = extended
            headerLength += 8
        }
        // Checked as soon as the length is known, before waiting for (or buffering) the payload.
        if opcode & 0x8 != 0 {
            guard fin else { throw .protocolViolation("fragmented control frame") }
            guard length <= 125 else { throw .protocolViolation("control frame longer than 125 bytes") }
        }
        guard length <= UInt64(maxFrameSize) else { throw .tooLarge }
        let isMasked = second & 0x80 != 0
        var mask: UInt32?
        if isMasked {
            guard let key = buffer.getInteger(at: start + headerLength, as: UInt32.self) else { return nil }
            mask = key
            headerLength += 4
        }
        let payloadLength = Int(length)
        guard buffer.readableBytes >= headerLength + payloadLength else { return nil }
        buffer.moveReaderIndex(forwardBy: headerLength)
        guard var payload = buffer.readSlice(length: payloadLength) else { return nil }
        pending = buffer.readableBytes > 0 ? buffer : nil
        if let mask, payloadLength > 0 {
            payload.withUnsafeMutableReadableBytes { bytes in
                for index in bytes.indices { bytes[index] ^= UInt8(truncatingIfNeeded: mask >> (24 - 8 * UInt32(index & 3))) }
            }
        }
        return InboundFrame(fin: fin, opcode: opcode, isMasked: isMasked, isCompressed: isCompressed, payload: payload)
    }

    /// Drops anything buffered (after a failure the rest of the stream is ignored).
    public mutating func reset() {
        pending = nil
    }
}
