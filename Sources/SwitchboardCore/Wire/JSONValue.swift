public import NIOCore

/// Any JSON value, as read from a client or an API body.
///
/// Integers that fit in 64 bits stay exact; other numbers are `Double`s.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// Deepest nesting of arrays and objects accepted from a client.
    public static let maxDepth = 32

    /// Parses JSON text (RFC 8259, read by ``JSONReader``), refusing nesting deeper than ``maxDepth``.
    public static func parse(_ bytes: some Collection<UInt8>) throws(JSONParseError) -> JSONValue {
        func read(_ contiguous: UnsafeBufferPointer<UInt8>) -> Result<JSONValue, JSONParseError> {
            Result { () throws(JSONParseError) in try JSONReader.read(contiguous) }
        }
        let parsed = bytes.withContiguousStorageIfAvailable(read) ?? Array(bytes).withUnsafeBufferPointer(read)
        return try parsed.get()
    }

    /// Compact JSON text of this value.
    public var jsonText: String {
        var buffer = ByteBuffer()
        write(into: &buffer)
        return String(buffer: buffer)
    }

    func write(into buffer: inout ByteBuffer) {
        switch self {
        case .null: buffer.writeStaticString("null")
        case .bool(let value): buffer.writeString(value ? "true" : "false")
        case .int(let value): buffer.writeDecimal(value)
        case .double(let value): buffer.writeString("\(value)")
        case .string(let value): buffer.writeJSONString(value)
        case .array(let values):
            buffer.writeStaticString("[")
            for (index, value) in values.enumerated() {
                if index > 0 { buffer.writeStaticString(",") }
                value.write(into: &buffer)
            }
            buffer.writeStaticString("]")
        case .object(let members):
            buffer.writeStaticString("{")
            for (index, (key, value)) in members.sorted(by: { $0.key < $1.key }).enumerated() {
                if index > 0 { buffer.writeStaticString(",") }
                buffer.writeJSONString(key)
                buffer.writeStaticString(":")
                value.write(into: &buffer)
            }
            buffer.writeStaticString("}")
        }
    }

    /// Whether this is a JSON object.
    public var isObject: Bool {
        if case .object = self { return true }
        return false
    }

    /// The value of `key` when this is an object.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members[key]
    }
}

/// JSON that could not be parsed.
public struct JSONParseError: Error, Sendable {
    public let message: String
    init(_ message: String) { self.message = message }
}
