public import NIOCore

extension ByteBuffer {
    /// Writes `string` as a JSON string literal, quotes included (RFC 8259 §7).
    public mutating func writeJSONString(_ string: some StringProtocol) {
        writeInteger(UInt8(ascii: "\""))
        var pending = string.utf8.startIndex
        let utf8 = string.utf8
        var index = utf8.startIndex
        while index != utf8.endIndex {
            let byte = utf8[index]
            if byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
                writeBytes(utf8[pending..<index])
                writeEscaped(byte)
                pending = utf8.index(after: index)
            }
            index = utf8.index(after: index)
        }
        writeBytes(utf8[pending..<utf8.endIndex])
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

    /// Writes `value` in decimal ASCII digits.
    public mutating func writeDecimal(_ value: some BinaryInteger) {
        writeString(String(value))
    }
}
