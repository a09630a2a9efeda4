public import NIOCore

/// Turns the bytes Redis sends into ``RESPValue``s, incrementally: a reply may arrive split at any byte, and
/// nested arrays are assembled on a stack, so nothing is parsed twice and no recursion depends on the input.
///
/// A pure state machine (no I/O): ``append(_:)`` bytes, then take values with ``next()`` until it returns nil.
/// Bounds keep a broken or hostile peer from making it hold unbounded memory.
public struct RESPParser: Sendable {
    /// Limits on what one reply may make the parser hold.
    public struct Limits: Sendable {
        /// Largest bulk string (Redis's own limit is 512 MB; ours is smaller by default).
        public var maxBulkBytes: Int
        /// Most elements of one array.
        public var maxArrayCount: Int
        /// Deepest nesting of arrays.
        public var maxDepth: Int
        /// Longest line (`+`, `-`, `:` values and headers).
        public var maxLineBytes: Int

        public init(maxBulkBytes: Int = 64 * 1_048_576, maxArrayCount: Int = 1_048_576, maxDepth: Int = 32, maxLineBytes: Int = 65_536) {
            self.maxBulkBytes = maxBulkBytes
            self.maxArrayCount = maxArrayCount
            self.maxDepth = maxDepth
            self.maxLineBytes = maxLineBytes
        }
    }

    /// Why the stream cannot be read on: the connection must be closed.
    public struct ProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
    }

    public let limits: Limits
    private var buffer = ByteBuffer()
    /// Arrays being filled, outermost first: how many elements each still needs.
    private var open: [(remaining: Int, elements: [RESPValue])] = []

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Adds bytes read from the connection.
    public mutating func append(_ bytes: ByteBuffer) {
        var bytes = bytes
        if buffer.readableBytes == 0 { buffer.clear() } else if buffer.readerIndex > 65_536 { buffer.discardReadBytes() }
        buffer.writeBuffer(&bytes)
    }

    /// Bytes received and not yet parsed.
    public var bufferedBytes: Int { buffer.readableBytes }

    /// The next complete value, or nil until more bytes arrive.
    public mutating func next() throws(ProtocolError) -> RESPValue? {
        while let scalar = try nextElement() {
            switch scalar {
            case .value(let value):
                if let completed = complete(with: value) { return completed }
            case .arrayHeader(let count):
                guard open.count < limits.maxDepth else { throw ProtocolError(description: "arrays nested deeper than \(limits.maxDepth)") }
                if count == 0 {
                    if let completed = complete(with: .array([])) { return completed }
                } else {
                    open.append((count, []))
                    open[open.count - 1].elements.reserveCapacity(min(count, 1024))
                }
            }
        }
        return nil
    }

    /// Adds a finished value to the innermost open array; returns a top-level value once one is whole.
    private mutating func complete(with value: RESPValue) -> RESPValue? {
        var value = value
        while !open.isEmpty {
            open[open.count - 1].elements.append(value)
            open[open.count - 1].remaining -= 1
            guard open[open.count - 1].remaining == 0 else { return nil }
            value = .array(open.removeLast().elements)
        }
        return value
    }

    private enum Element {
        case value(RESPValue)
        case arrayHeader(Int)
    }

    /// One scalar or array header, consumed only when complete.
    private mutating func nextElement() throws(ProtocolError) -> Element? {
        guard let type = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return nil }
        guard Self.types.contains(type) else { throw ProtocolError(description: "unknown RESP type byte 0x\(String(type, radix: 16))") }
        guard let (line, lineEnd) = try lineAfterType() else { return nil }
        switch type {
        case UInt8(ascii: "+"):
            buffer.moveReaderIndex(to: lineEnd)
            return .value(.simpleString(line))
        case UInt8(ascii: "-"):
            buffer.moveReaderIndex(to: lineEnd)
            return .value(.error(line))
        case UInt8(ascii: ":"):
            guard let number = Int64(line) else { throw ProtocolError(description: "bad integer '\(line.prefix(32))'") }
            buffer.moveReaderIndex(to: lineEnd)
            return .value(.integer(number))
        case UInt8(ascii: "$"):
            guard let length = Int(line), length >= -1 else { throw ProtocolError(description: "bad bulk length '\(line.prefix(32))'") }
            guard length <= limits.maxBulkBytes else { throw ProtocolError(description: "bulk string of \(length) bytes is over the limit") }
            if length == -1 {
                buffer.moveReaderIndex(to: lineEnd)
                return .value(.bulkString(nil))
            }
            guard buffer.writerIndex - lineEnd >= length + 2 else { return nil }
            guard buffer.getInteger(at: lineEnd + length, as: UInt16.self) == 0x0D0A else {
                throw ProtocolError(description: "bulk string not followed by CRLF")
            }
            let bytes = buffer.getSlice(at: lineEnd, length: length)
            buffer.moveReaderIndex(to: lineEnd + length + 2)
            return .value(.bulkString(bytes))
        case UInt8(ascii: "*"):
            guard let count = Int(line), count >= -1 else { throw ProtocolError(description: "bad array length '\(line.prefix(32))'") }
            guard count <= limits.maxArrayCount else { throw ProtocolError(description: "array of \(count) elements is over the limit") }
            buffer.moveReaderIndex(to: lineEnd)
            return count == -1 ? .value(.array(nil)) : .arrayHeader(count)
        default:
            throw ProtocolError(description: "unknown RESP type byte 0x\(String(type, radix: 16))")
        }
    }

    /// The RESP2 type bytes: `+`, `-`, `:`, `$`, `*`.
    private static let types: [UInt8] = [UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: ":"), UInt8(ascii: "$"), UInt8(ascii: "*")]


    /// The text between the type byte and the next CRLF, and the index after the CRLF; nil until it is all here.
    private func lineAfterType() throws(ProtocolError) -> (String, Int)? {
        let start = buffer.readerIndex + 1
        let available = buffer.writerIndex - start
        let searched = min(available, limits.maxLineBytes + 2)
        let view = buffer.readableBytesView.dropFirst()
        guard let carriageReturn = view.prefix(searched).firstIndex(of: UInt8(ascii: "\r")) else {
            if available > limits.maxLineBytes + 1 { throw ProtocolError(description: "line longer than \(limits.maxLineBytes) bytes") }
            return nil
        }
        guard carriageReturn + 1 < view.endIndex else { return nil }
        guard view[carriageReturn + 1] == UInt8(ascii: "\n") else { throw ProtocolError(description: "CR not followed by LF") }
        let text = String(decoding: view[view.startIndex..<carriageReturn], as: UTF8.self)
        return (text, carriageReturn + 2)
    }
}
