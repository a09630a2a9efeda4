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
    private static let version = Array(" HTTP/1.1".utf8)

    /// - Parameter searched: how many of the bytes an earlier call already saw without finding the head's end
    ///   (a head arriving in many small reads is searched once, not once per read).
    static func parse(_ bytes: ByteBufferView, searched: Int = 0) -> Parse {
        // A view of a buffer's readable bytes is always contiguous; the copy is only for form's sake.
        bytes.withContiguousStorageIfAvailable { parse(UnsafeRawBufferPointer($0), searched: searched) }
            ?? Array(bytes).withUnsafeBytes { parse($0, searched: searched) }
    }

    /// The same, on the bytes themselves: one pass with no per-byte bounds checks of a buffer view (this ran
    /// for every connection of a reconnect storm).
    private static func parse(_ bytes: UnsafeRawBufferPointer, searched: Int) -> Parse {
        // The request line's start decides at once for every other request (API calls, Socket.IO, the dashboard).
        for offset in 0..<min(bytes.count, prefix.count + 1) {
            let byte = bytes[offset]
            if offset < prefix.count {
                guard byte == prefix[offset] else { return .otherwise }
            } else if byte != UInt8(ascii: " ") && byte != UInt8(ascii: "?") {
                return .otherwise
            }
        }
        guard let end = endOfHead(in: bytes, from: max(0, searched - 3)) else { return bytes.count > maxHeadBytes ? .otherwise : .needsMore }
        guard let head = head(of: UnsafeRawBufferPointer(rebasing: bytes[..<end])) else { return .otherwise }
        return .upgrade(head, headLength: end + 4)
    }

    /// The offset of the `\r\n\r\n` ending the head, within ``maxHeadBytes``, searching from offset `from`.
    private static func endOfHead(in bytes: UnsafeRawBufferPointer, from: Int) -> Int? {
        let limit = min(bytes.count, maxHeadBytes)
        var index = from
        while index + 4 <= limit {
            if bytes[index] == UInt8(ascii: "\r"), bytes[index + 1] == UInt8(ascii: "\n"), bytes[index + 2] == UInt8(ascii: "\r"),
                bytes[index + 3] == UInt8(ascii: "\n")
            {
                return index
            }
            index += 1
        }
        return nil
    }

    /// The head from its request line and header lines (without the final blank line), or nil: an upgrade with no
    /// body, whose headers are all well-formed. Anything with a body, or that is not an upgrade, is the HTTP
    /// pipeline's.
    private static func head(of bytes: UnsafeRawBufferPointer) -> HTTPRequestHead? {
        var lines = Lines(bytes)
        guard let requestLine = lines.next(), requestLine.count > 4 + version.count, requestLine.suffix(version.count).elementsEqual(version)
        else { return nil }
        let target = requestLine[4..<(requestLine.count - version.count)]
        guard target.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return nil }
        var headers: [(String, String)] = []
        var upgrades = 0
        var upgradesToWebSocket = false
        var connectionUpgrade = false
        while let line = lines.next() {
            guard headers.count < maxHeaders, let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return nil }
            let name = UnsafeRawBufferPointer(rebasing: line[..<colon])
            guard !name.isEmpty, name.allSatisfy(isTokenCharacter) else { return nil }
            let value = trimmingBlanks(UnsafeRawBufferPointer(rebasing: line[(colon + 1)...]))
            guard value.allSatisfy({ ($0 >= 0x20 && $0 < 0x7F) || $0 == 0x09 }) else { return nil }
            if equalIgnoringCase(name, "content-length") {
                guard value.count == 1, value[0] == UInt8(ascii: "0") else { return nil }
            } else if equalIgnoringCase(name, "transfer-encoding") {
                return nil
            } else if equalIgnoringCase(name, "upgrade") {
                upgrades += 1
                upgradesToWebSocket = equalIgnoringCase(value, "websocket")
            } else if equalIgnoringCase(name, "connection") {
                connectionUpgrade = connectionUpgrade
                    || value.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false).contains {
                        equalIgnoringCase(trimmingBlanks(UnsafeRawBufferPointer(rebasing: $0)), "upgrade")
                    }
            }
            headers.append((String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self)))
        }
        guard upgrades == 1, upgradesToWebSocket, connectionUpgrade else { return nil }
        return HTTPRequestHead(
            version: .http1_1, method: .GET, uri: String(decoding: UnsafeRawBufferPointer(rebasing: target), as: UTF8.self),
            headers: HTTPHeaders(headers))
    }

    /// The CRLF-separated lines of a head (a bare CR or LF stays inside its line, where the checks refuse it).
    private struct Lines {
        let bytes: UnsafeRawBufferPointer
        var start = 0
        var done = false

        init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

        mutating func next() -> UnsafeRawBufferPointer? {
            guard !done else { return nil }
            var index = start
            while index + 1 < bytes.count {
                if bytes[index] == UInt8(ascii: "\r") && bytes[index + 1] == UInt8(ascii: "\n") {
                    defer { start = index + 2 }
                    return UnsafeRawBufferPointer(rebasing: bytes[start..<index])
                }
                index += 1
            }
            done = true
            return UnsafeRawBufferPointer(rebasing: bytes[start...])
        }
    }

    /// Whether `bytes` spell `lowercase` (ASCII, given in lower case) in any case.
    private static func equalIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ lowercase: StaticString) -> Bool {
        guard bytes.count == lowercase.utf8CodeUnitCount else { return false }
        let expected = UnsafeRawBufferPointer(start: lowercase.utf8Start, count: lowercase.utf8CodeUnitCount)
        for index in 0..<bytes.count {
            let byte = bytes[index]
            let lowered = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
            guard lowered == expected[index] else { return false }
        }
        return true
    }

    /// Without leading and trailing spaces and tabs (RFC 9110 §5.5: optional whitespace around a field value).
    private static func trimmingBlanks(_ bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        let isBlank = { (byte: UInt8) in byte == 0x20 || byte == 0x09 }
        guard let first = bytes.firstIndex(where: { !isBlank($0) }), let last = bytes.lastIndex(where: { !isBlank($0) }) else {
            return UnsafeRawBufferPointer(rebasing: bytes[0..<0])
        }
        return UnsafeRawBufferPointer(rebasing: bytes[first...last])
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
