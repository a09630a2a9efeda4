public import NIOCore

/// One RESP2 value (the Redis serialization protocol): what a command is sent as, and what Redis answers.
public enum RESPValue: Sendable, Equatable {
    /// `+OK`
    case simpleString(String)
    /// `-ERR message`: a command's failure (the connection stays usable).
    case error(String)
    /// `:42`
    case integer(Int64)
    /// `$5\r\nhello`; nil is the null bulk string `$-1`.
    case bulkString(ByteBuffer?)
    /// `*2\r\n...`; nil is the null array `*-1`.
    case array([RESPValue]?)

    /// A bulk string holding `text`.
    public static func bulk(_ text: String) -> RESPValue { .bulkString(ByteBuffer(string: text)) }

    /// The value as text: simple and bulk strings, and integers in decimal.
    public var string: String? {
        switch self {
        case .simpleString(let text): text
        case .bulkString(let bytes?): String(buffer: bytes)
        case .integer(let number): String(number)
        default: nil
        }
    }

    /// The value as an integer: integers, and strings holding a decimal number.
    public var integer: Int64? {
        switch self {
        case .integer(let number): number
        case .simpleString, .bulkString: string.flatMap { Int64($0) }
        default: nil
        }
    }

    /// The elements of an array (nil for anything else, the null array included).
    public var array: [RESPValue]? {
        if case .array(let elements?) = self { return elements }
        return nil
    }

    /// Whether this is the null bulk string or the null array.
    public var isNull: Bool {
        switch self {
        case .bulkString(nil), .array(nil): true
        default: false
        }
    }
}

extension RESPValue: CustomStringConvertible {
    public var description: String {
        switch self {
        case .simpleString(let text): "+\(text)"
        case .error(let message): "-\(message)"
        case .integer(let number): ":\(number)"
        case .bulkString(nil), .array(nil): "(nil)"
        case .bulkString(let bytes?): "\"\(String(buffer: bytes))\""
        case .array(let elements?): "[" + elements.map(\.description).joined(separator: ", ") + "]"
        }
    }
}

extension ByteBuffer {
    /// Writes `value` in RESP2, as a server would send it (for tests and tools).
    public mutating func writeRESPValue(_ value: RESPValue) {
        switch value {
        case .simpleString(let text): writeString("+\(text)\r\n")
        case .error(let message): writeString("-\(message)\r\n")
        case .integer(let number): writeString(":\(number)\r\n")
        case .bulkString(nil): writeStaticString("$-1\r\n")
        case .bulkString(let bytes?):
            writeString("$\(bytes.readableBytes)\r\n")
            writeImmutableBuffer(bytes)
            writeStaticString("\r\n")
        case .array(nil): writeStaticString("*-1\r\n")
        case .array(let elements?):
            writeString("*\(elements.count)\r\n")
            for element in elements { writeRESPValue(element) }
        }
    }

    /// Writes a command as Redis expects it from clients: an array of bulk strings.
    public mutating func writeRESPCommand(_ arguments: [RESPArgument]) {
        writeString("*\(arguments.count)\r\n")
        for argument in arguments {
            switch argument.storage {
            case .text(let text):
                writeString("$\(text.utf8.count)\r\n")
                writeString(text)
            case .bytes(let bytes):
                writeString("$\(bytes.readableBytes)\r\n")
                writeImmutableBuffer(bytes)
            }
            writeStaticString("\r\n")
        }
    }
}

/// One argument of a command: text or raw bytes (sent as a bulk string either way).
public struct RESPArgument: Sendable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    enum Storage: Sendable {
        case text(String)
        case bytes(ByteBuffer)
    }

    let storage: Storage

    public init(_ text: String) { storage = .text(text) }
    public init(_ bytes: ByteBuffer) { storage = .bytes(bytes) }
    public init<Number: BinaryInteger>(_ number: Number) { storage = .text(String(number)) }
    public init(stringLiteral text: String) { storage = .text(text) }
    public init(integerLiteral number: Int) { storage = .text(String(number)) }
}
