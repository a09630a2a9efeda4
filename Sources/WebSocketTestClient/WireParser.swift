import Foundation
import NIOCore

/// An HTTP response as the test client read it.
public struct HTTPTestResponse: Sendable {
    public let status: Int
    public let headers: [(String, String)]
    public let body: String

    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
}

/// One server -> client WebSocket frame.
public struct ServerFrame: Sendable {
    public let fin: Bool
    public let opcode: UInt8
    public let payload: [UInt8]
    /// Whether the server (wrongly) masked it.
    public let masked: Bool
    /// RSV1: a permessage-deflate compressed message (RFC 7692).
    public let compressed: Bool

    public var text: String { String(decoding: payload, as: UTF8.self) }
    /// For a close frame: its code, if any.
    public var closeCode: UInt16? {
        guard opcode == 0x8, payload.count >= 2 else { return nil }
        return UInt16(payload[0]) << 8 | UInt16(payload[1])
    }
    public var closeReason: String { String(decoding: payload.dropFirst(2), as: UTF8.self) }
}

/// Incremental parsing of an HTTP response head and of WebSocket frames, and client frame encoding.
public enum WireParser {
    /// Parses a response head ending in CRLFCRLF; returns it and the bytes it used.
    static func responseHead(_ buffer: ByteBuffer) throws -> (status: Int, headers: [(String, String)], length: Int)? {
        let view = buffer.readableBytesView
        guard let end = view.firstRange(of: Array("\r\n\r\n".utf8)) else { return nil }
        let text = String(decoding: view[view.startIndex..<end.lowerBound], as: UTF8.self)
        var lines = text.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else {
            throw WebSocketTestClientError.badResponse(text)
        }
        let headers = lines.compactMap { line -> (String, String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        return (status, headers, end.upperBound - view.startIndex)
    }

    /// Reads one frame from `buffer` if it is complete.
    static func frame(_ buffer: inout ByteBuffer) -> ServerFrame? {
        let start = buffer.readerIndex
        guard let first = buffer.readInteger(as: UInt8.self), let second = buffer.readInteger(as: UInt8.self) else {
            buffer.moveReaderIndex(to: start)
            return nil
        }
        var length = Int(second & 0x7F)
        if length == 126 {
            guard let extended = buffer.readInteger(as: UInt16.self) else { buffer.moveReaderIndex(to: start); return nil }
            length = Int(extended)
        } else if length == 127 {
            guard let extended = buffer.readInteger(as: UInt64.self) else { buffer.moveReaderIndex(to: start); return nil }
            length = Int(extended)
        }
        let masked = second & 0x80 != 0
        var mask: [UInt8] = []
        if masked {
            guard let key = buffer.readBytes(length: 4) else { buffer.moveReaderIndex(to: start); return nil }
            mask = key
        }
        guard var payload = buffer.readBytes(length: length) else {
            buffer.moveReaderIndex(to: start)
            return nil
        }
        if masked { for index in payload.indices { payload[index] ^= mask[index % 4] } }
        return ServerFrame(fin: first & 0x80 != 0, opcode: first & 0x0F, payload: payload, masked: masked, compressed: first & 0x40 != 0)
    }

    /// A client frame, masked unless told otherwise (RFC 6455 §5.3).
    public static func clientFrame(opcode: UInt8, payload: some Collection<UInt8>, fin: Bool = true, masked: Bool = true) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger((fin ? 0x80 : 0) | opcode)
        let maskBit: UInt8 = masked ? 0x80 : 0
        switch payload.count {
        case ..<126: buffer.writeInteger(maskBit | UInt8(payload.count))
        case ..<65536:
            buffer.writeInteger(maskBit | 126)
            buffer.writeInteger(UInt16(payload.count))
        default:
            buffer.writeInteger(maskBit | 127)
            buffer.writeInteger(UInt64(payload.count))
        }
        if masked {
            let key = (0..<4).map { _ in UInt8.random(in: 0...255) }
            buffer.writeBytes(key)
            buffer.writeBytes(payload.enumerated().map { $0.element ^ key[$0.offset % 4] })
        } else {
            buffer.writeBytes(payload)
        }
        return buffer
    }
}
