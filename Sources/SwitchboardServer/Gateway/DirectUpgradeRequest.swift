import NIOCore
import NIOHTTP1

/// Recognises the plain `/ws` upgrade request that almost every client sends, from the first bytes of a
/// connection, so that ``DirectUpgradeHandler`` can answer it without setting up NIO's HTTP/1 pipeline.
///
/// Deliberately narrow: `GET /ws` (with or without a query) `HTTP/1.1`, header lines of visible ASCII,
/// `Upgrade: websocket` and a `Connection` naming `upgrade`, no body. Anything else, or anything it is not
/// sure of, is `.otherwise`: the connection then goes through NIO's HTTP parser as before, which answers
/// every other request, and every malformed one, as it always has.
enum DirectUpgradeRequest {
    enum Parse: Equatable {
        /// Not a complete head yet, and nothing so far rules it out.
        case needsMore
        /// Not (or not surely) a plain `/ws` upgrade: leave it to the HTTP pipeline.
        case otherwise
        /// The request head, and how many bytes of the input it took (what follows is the client's).
        case upgrade(HTTPRequestHead, headLength: Int)
    }

    /// Most bytes of a head taken here (a bigger one goes to the HTTP pipeline and its limits).
    static let maxHeadBytes = 8_192
    /// Most header lines taken here.
    static let maxHeaders = 64

    private static let prefix = Array("GET /ws".utf8)
    private static let headEnd = Array("\r\n\r\n".utf8)

    /// - Parameter searched: how many of the bytes an earlier call already saw without finding the head's end
    ///   (a head arriving in many small reads is searched once, not once per read).
    static func parse(_ bytes: ByteBufferView, searched: Int = 0) -> Parse {
        // The request line's start decides at once for every other request (API calls, Socket.IO, the dashboard).
        let known = min(bytes.count, prefix.count + 1)
        for (offset, byte) in bytes.prefix(known).enumerated() {
            if offset < prefix.count {
                guard byte == prefix[offset] else { return .otherwise }
            } else if byte != UInt8(ascii: " ") && byte != UInt8(ascii: "?") {
                return .otherwise
            }
        }
        guard let end = endOfHead(in: bytes, from: max(0, searched - (headEnd.count - 1))) else { return bytes.count > maxHeadBytes ? .otherwise : .needsMore }
        guard let head = head(of: bytes[bytes.startIndex..<end]) else { return .otherwise }
        return .upgrade(head, headLength: end + headEnd.count - bytes.startIndex)
    }

    /// The index of the `\r\n\r\n` ending the head, within ``maxHeadBytes``, searching from offset `from`.
    private static func endOfHead(in bytes: ByteBufferView, from: Int) -> Int? {
        let limit = min(bytes.endIndex, bytes.startIndex + maxHeadBytes)
        var index = bytes.startIndex + from
        while index + headEnd.count <= limit {
            if bytes[index] == UInt8(ascii: "\r"), bytes[index + 1] == UInt8(ascii: "\n"), bytes[index + 2] == UInt8(ascii: "\r"),
                bytes[index + 3] == UInt8(ascii: "\n")
            {
                return index
            }
            index += 1
        }
        return nil
    }

    /// The head from its request line and header lines (without the final blank line), or nil.
    private static func head(of bytes: ByteBufferView.SubSequence) -> HTTPRequestHead? {
        var lines = split(bytes)
        guard let requestLine = lines.first, lines.count - 1 <= maxHeaders else { return nil }
        lines.removeFirst()
        let suffix = Array(" HTTP/1.1".utf8)
        guard requestLine.count > 4 + suffix.count, requestLine.suffix(suffix.count).elementsEqual(suffix) else { return nil }
        let target = requestLine.dropFirst(4).dropLast(suffix.count)
        guard target.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return nil }
        var headers: [(String, String)] = []
        headers.reserveCapacity(lines.count)
        for line in lines {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return nil }
            let name = line[line.startIndex..<colon]
            guard !name.isEmpty, name.allSatisfy(isTokenCharacter) else { return nil }
            let value = line[(colon + 1)...].trimmingSpaces
            guard value.allSatisfy({ ($0 >= 0x20 && $0 < 0x7F) || $0 == 0x09 }) else { return nil }
            headers.append((String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self)))
        }
        let head = HTTPRequestHead(
            version: .http1_1, method: .GET, uri: String(decoding: target, as: UTF8.self), headers: HTTPHeaders(headers))
        // An upgrade, with no body; anything with a body, or that is not an upgrade, is the HTTP pipeline's.
        guard head.headers["Content-Length"].allSatisfy({ $0 == "0" }), !head.headers.contains(name: "Transfer-Encoding"),
            head.headers["Upgrade"].count == 1, head.headers["Upgrade"].first?.lowercased() == "websocket",
            head.headers[canonicalForm: "Connection"].contains(where: { $0.lowercased() == "upgrade" })
        else { return nil }
        return head
    }

    /// The CRLF-separated lines (a bare CR or LF stays inside its line, where the checks refuse it).
    private static func split(_ bytes: ByteBufferView.SubSequence) -> [ByteBufferView.SubSequence] {
        var lines: [ByteBufferView.SubSequence] = []
        var start = bytes.startIndex
        var index = bytes.startIndex
        while index + 1 < bytes.endIndex {
            if bytes[index] == UInt8(ascii: "\r") && bytes[index + 1] == UInt8(ascii: "\n") {
                lines.append(bytes[start..<index])
                index += 2
                start = index
            } else {
                index += 1
            }
        }
        lines.append(bytes[start..<bytes.endIndex])
        return lines
    }

    /// RFC 9110 §5.6.2 `tchar`.
    private static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default:
            "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}

extension ByteBufferView.SubSequence {
    /// Without leading and trailing spaces and tabs (RFC 9110 §5.5: optional whitespace around a field value).
    fileprivate var trimmingSpaces: Self {
        let isSpace = { (byte: UInt8) in byte == 0x20 || byte == 0x09 }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return self[endIndex..<endIndex]
        }
        return self[first...last]
    }
}
