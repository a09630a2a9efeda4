public import NIOCore

extension ByteBuffer {
    /// Writes `string` as a JSON string literal, quotes included (RFC 8259 §7).
    ///
    /// Inlinable so that callers in other modules get it specialised for `String` and `Substring`; the scan
    /// itself runs on the UTF-8 bytes (generic index arithmetic through `StringProtocol` cost more than the
    /// writing, on every `welcome` and `subscribed` of a connect storm).
    @inlinable
    public mutating func writeJSONString(_ string: some StringProtocol) {
        if string.utf8.withContiguousStorageIfAvailable({ writeJSONString(utf8: UnsafeRawBufferPointer($0)) }) == nil {
            var copy = String(string)
            copy.withUTF8 { writeJSONString(utf8: UnsafeRawBufferPointer($0)) }
        }
    }

    /// The literal of UTF-8 `bytes`: runs without escapes are written whole.
    @usableFromInline
    mutating func writeJSONString(utf8 bytes: UnsafeRawBufferPointer) {
        writeInteger(UInt8(ascii: "\""))
        var pending = 0
        for index in 0..<bytes.count {
            let byte = bytes[index]
            if byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
                writeBytes(UnsafeRawBufferPointer(rebasing: bytes[pending..<index]))
                writeEscaped(byte)
                pending = index + 1
            }
        }
        writeBytes(UnsafeRawBufferPointer(rebasing: bytes[pending...]))
        writeInteger(UInt8(ascii: "\""))
    }

    private mutating func writeEscaped(_ byte: UInt8) {
        switch byte {
        case UInt8(ascii: "\""): writeStaticString("\\\"")
        case UInt8(ascii: "\\"): writeStaticString("\\\\")
        case UInt8(ascii: "\n"): writeStaticString("\\n")
        case UInt8(ascii: "\r"): writeStaticString("\\r")
        case UInt8(ascii: "\t"): writeStaticString("\\t")
        default:
            let hex: [UInt8] = Array("0123456789abcdef".utf8)
            writeStaticString("\\u00")
            writeInteger(hex[Int(byte >> 4)])
            writeInteger(hex[Int(byte & 0x0F)])
        }
    }

    /// Writes `value` in decimal ASCII digits (inlinable: specialised for the caller's integer type).
    @inlinable
    public mutating func writeDecimal(_ value: some BinaryInteger) {
        writeString(String(value))
    }
}
