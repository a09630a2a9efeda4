import CompressNIO
import NIOCore
import SwitchboardCore

/// permessage-deflate for one event loop's connections (RFC 7692, SPEC §12): compresses outbound frames and
/// inflates clients' compressed messages.
///
/// Negotiated with `server_no_context_takeover` and `client_no_context_takeover` (``PerMessageDeflate``), so
/// every message is a deflate stream of its own: one compressor and one decompressor per loop serve all of its
/// connections, reset after each message, and a connection holds no zlib state (zlib's is about 300 KiB).
/// A publication is compressed once, by the first loop that needs it, and the frame is shared through
/// ``Delivery/frame(_:encodedBy:)`` by every compressing recipient on every loop.
///
/// Event-loop confined (`@unchecked Sendable`): the node keeps one per loop and each is used on its loop only.
final class MessageDeflater: @unchecked Sendable {
    /// Why a client's compressed message was refused.
    enum InflateFailure: Error {
        /// It inflates to more than the limit (close 1009: a decompression bomb among others).
        case tooLarge
        /// It is not a valid deflate stream (close 1002).
        case corrupt

        /// The close code the connection fails with.
        var closeCode: CloseCode {
            switch self {
            case .tooLarge: .messageTooBig
            case .corrupt: .protocolError
            }
        }

        /// The close frame's reason, for a message limit of `limit` bytes.
        func reason(limit: Int) -> String {
            switch self {
            case .tooLarge: "message inflates to more than \(limit) bytes"
            case .corrupt: "compressed message is not valid deflate data"
            }
        }
    }

    /// Frames with a smaller payload go uncompressed (`compression-min-bytes`).
    let minimumBytes: Int
    private let compressor: ZlibCompressor
    private let decompressor: ZlibDecompressor

    /// Nil if zlib cannot start (out of memory).
    init?(minimumBytes: Int) {
        self.minimumBytes = minimumBytes
        do {
            compressor = try ZlibCompressor(algorithm: .deflate, configuration: .init(windowSize: 15, compressionLevel: 6, memoryLevel: 8))
            decompressor = try ZlibDecompressor(algorithm: .deflate, windowSize: 15)
        } catch {
            return nil
        }
    }

    /// The frame a compressing connection gets for `delivery`: compressed once and shared, or the plain frame
    /// for small payloads. Either way it is the same buffer for every caller.
    func frame(of delivery: Delivery, counting compressed: inout CompressedBytes) -> ByteBuffer {
        let frame = delivery.frame(.deflated) { delivery in compressedFrame(ofText: delivery.payload) ?? delivery.frame }
        compressed.count(frame, plain: delivery.frame)
        return frame
    }

    /// The Socket.IO frame of a message delivery for a compressing Socket.IO WebSocket, shared the same way.
    func socketIOFrame(of delivery: Delivery, counting compressed: inout CompressedBytes) -> ByteBuffer {
        // Built first (under its own lock): the compressed frame is made from it.
        let plain = SocketIOCodec.messageFrame(of: delivery)
        let frame = delivery.frame(.socketIODeflated) { _ in compressedFrame(ofText: WebSocketWireFrame.payload(of: plain)) ?? plain }
        compressed.count(frame, plain: plain)
        return frame
    }

    /// A text frame with `payload` compressed and RSV1 set (RFC 7692 §7.2.1), or nil when the payload is below
    /// ``minimumBytes`` or would not get smaller.
    func compressedFrame(ofText payload: ByteBuffer) -> ByteBuffer? {
        guard payload.readableBytes >= max(minimumBytes, 1) else { return nil }
        defer { try? compressor.reset() }
        var input = payload
        var body = ByteBuffer()
        body.reserveCapacity(compressor.maxSize(from: payload))
        do {
            try compressor.deflate(from: &input, to: &body, flush: .sync)
        } catch {
            return nil
        }
        // A sync flush ends with an empty stored block, 00 00 ff ff, which the receiver adds back (§7.2.1).
        guard input.readableBytes == 0, body.readableBytes >= 4,
            body.getBytes(at: body.writerIndex - 4, length: 4) == [0x00, 0x00, 0xFF, 0xFF]
        else { return nil }
        body.moveWriterIndex(to: body.writerIndex - 4)
        guard body.readableBytes < payload.readableBytes else { return nil }
        var frame = ByteBuffer()
        frame.reserveCapacity(body.readableBytes + 10)
        WebSocketWireFrame.writeHeader(opcode: .text, length: body.readableBytes, into: &frame, compressed: true)
        frame.writeBuffer(&body)
        return frame
    }

    /// The frame for compressing `batch` connections: a `batch` frame (built per pass) compressed the same way.
    func compressedFrame(ofFrame frame: ByteBuffer, counting compressed: inout CompressedBytes) -> ByteBuffer {
        let result = compressedFrame(ofText: WebSocketWireFrame.payload(of: frame)) ?? frame
        compressed.count(result, plain: frame)
        return result
    }

    /// A client message's payload, inflated (RFC 7692 §7.2.2), at most `limit` bytes.
    ///
    /// Output grows as needed up to `limit` + 1 bytes, so a bomb costs at most that much memory and the time
    /// to inflate it before it is refused.
    func inflate(_ payload: ByteBuffer, limit: Int) throws(InflateFailure) -> ByteBuffer {
        defer { try? decompressor.reset() }
        var input = payload
        input.writeBytes([0x00, 0x00, 0xFF, 0xFF])
        var output = ByteBuffer()
        output.reserveCapacity(min(limit + 1, max(256, payload.readableBytes * 4)))
        while true {
            do {
                try decompressor.inflate(from: &input, to: &output)
                break
            } catch let error as CompressNIOError where error == .bufferOverflow {
                // The output filled up: grow it, unless it already holds more than the limit.
                guard output.readableBytes <= limit else { throw .tooLarge }
                output.reserveCapacity(min(limit + 1, output.capacity * 2))
            } catch let error as CompressNIOError where error == .inputBufferOverflow {
                // Every byte was read and nothing more came out: the message is complete.
                break
            } catch {
                throw .corrupt
            }
        }
        guard output.readableBytes <= limit else { throw .tooLarge }
        return output
    }
}

/// Bytes of compressed frames written and what they would have taken uncompressed, gathered over one drain or
/// lane pass and recorded at once (SPEC §12: compressed versus raw bytes out).
struct CompressedBytes {
    private(set) var bytes = 0
    private(set) var raw = 0

    /// Counts `frame` if it went compressed; `plain` is the same message uncompressed.
    mutating func count(_ frame: ByteBuffer, plain: ByteBuffer) {
        guard WebSocketWireFrame.isCompressed(frame) else { return }
        bytes += frame.readableBytes
        raw += plain.readableBytes
    }

    /// Records what was counted, written `copies` times (a lane pass writes its frames to each member).
    func record(in statistics: NodeStatistics, copies: Int = 1) {
        guard bytes > 0 else { return }
        statistics.recordCompressedBytesOut(bytes * copies, raw: raw * copies)
    }
}
