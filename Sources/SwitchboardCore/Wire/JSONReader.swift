/// Reads RFC 8259 JSON text straight into a ``JSONValue``.
///
/// Written by hand because every message and API body goes through it: Foundation's `JSONDecoder` reaches
/// `JSONValue` only through `Decodable`, trying each JSON type in turn and building an error for each miss,
/// which made it most of an API publish's CPU. No package in reach reads into a caller's own value type.
///
/// Strict where RFC 8259 is: no trailing commas, no comments, no leading zeros, no control characters or
/// invalid UTF-8 in strings, no unpaired surrogate escapes. A leading UTF-8 byte-order mark is skipped
/// (RFC 8259 §8.1 allows it). When a key repeats in an object, the last value wins, as in JavaScript's
/// `JSON.parse`. Nesting deeper than ``JSONValue/maxDepth`` is refused as soon as it is reached.
struct JSONReader {
    private let bytes: UnsafeBufferPointer<UInt8>
    private var index = 0
    private var depth = 0
    /// Bytes of the string being unescaped, kept between strings to avoid an allocation per escape.
    private var scratch: [UInt8] = []

    private init(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    /// The one JSON value `bytes` holds, with nothing but whitespace after it.
    static func read(_ bytes: UnsafeBufferPointer<UInt8>) throws(JSONParseError) -> JSONValue {
        var reader = JSONReader(bytes)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { reader.index = 3 }
        let value = try reader.readValue()
        reader.skipWhitespace()
        guard reader.index == bytes.count else { throw reader.unexpected("after the value") }
        return value
    }

    // MARK: Values

    private mutating func readValue() throws(JSONParseError) -> JSONValue {
        skipWhitespace()
        guard let byte = peek() else { throw unexpected("where a value should start") }
        switch byte {
        case UInt8(ascii: "{"): return try readObject()
        case UInt8(ascii: "["): return try readArray()
        case UInt8(ascii: "\""): return .string(try readString())
        case UInt8(ascii: "t"): return try readLiteral("true", as: .bool(true))
        case UInt8(ascii: "f"): return try readLiteral("false", as: .bool(false))
        case UInt8(ascii: "n"): return try readLiteral("null", as: .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try readNumber()
        default: throw unexpected("where a value should start")
        }
    }

    private mutating func readObject() throws(JSONParseError) -> JSONValue {
        try enterNesting()
        var members: [String: JSONValue] = [:]
        skipWhitespace()
        if peek() == UInt8(ascii: "}") { return leaveNesting(.object(members)) }
        while true {
            skipWhitespace()
            guard peek() == UInt8(ascii: "\"") else { throw unexpected("where an object key should start") }
            let key = try readString()
            skipWhitespace()
            guard peek() == UInt8(ascii: ":") else { throw unexpected("where ':' should follow an object key") }
            index += 1
            members[key] = try readValue()
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"): return leaveNesting(.object(members))
            default: throw unexpected("where ',' or '}' should follow an object member")
            }
        }
    }

    private mutating func readArray() throws(JSONParseError) -> JSONValue {
        try enterNesting()
        var elements: [JSONValue] = []
        skipWhitespace()
        if peek() == UInt8(ascii: "]") { return leaveNesting(.array(elements)) }
        while true {
            elements.append(try readValue())
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "]"): return leaveNesting(.array(elements))
            default: throw unexpected("where ',' or ']' should follow an array element")
            }
        }
    }

    /// Steps over the closing bracket of `value`.
    private mutating func leaveNesting(_ value: JSONValue) -> JSONValue {
        index += 1
        depth -= 1
        return value
    }

    /// Steps over an opening bracket, refusing nesting deeper than ``JSONValue/maxDepth``.
    private mutating func enterNesting() throws(JSONParseError) {
        depth += 1
        guard depth <= JSONValue.maxDepth else { throw JSONParseError("JSON nested deeper than \(JSONValue.maxDepth) levels") }
        index += 1
    }

    private mutating func readLiteral(_ word: StaticString, as value: JSONValue) throws(JSONParseError) -> JSONValue {
        let literal = UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
        guard bytes.count - index >= literal.count, bytes[index..<(index + literal.count)].elementsEqual(literal) else {
            throw unexpected("where a value should start")
        }
        index += literal.count
        return value
    }

    // MARK: Numbers

    /// `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`. Integers that fit in 64 bits are exact; any other number
    /// is a `Double` (correctly rounded), and one that is integral and fits in 64 bits becomes `.int`, so that a
    /// value and its printed form always read back the same.
    private mutating func readNumber() throws(JSONParseError) -> JSONValue {
        let start = index
        let negative = peek() == UInt8(ascii: "-")
        if negative { index += 1 }
        let integerStart = index
        guard let first = peek(), isDigit(first) else { throw unexpected("where a digit should follow '-'") }
        index += 1
        if first != UInt8(ascii: "0") { skipDigits() }
        let integerEnd = index
        var isInteger = true
        if peek() == UInt8(ascii: ".") {
            index += 1
            guard let digit = peek(), isDigit(digit) else { throw unexpected("where a digit should follow '.'") }
            skipDigits()
            isInteger = false
        }
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            index += 1
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { index += 1 }
            guard let digit = peek(), isDigit(digit) else { throw unexpected("where an exponent's digits should be") }
            skipDigits()
            isInteger = false
        }
        if isInteger, let integer = exactInteger(digits: integerStart..<integerEnd, negative: negative) {
            return .int(integer)
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard let double = Double(text), double.isFinite else {
            throw JSONParseError("not valid JSON: number out of range at byte \(start)")
        }
        if let integer = Int64(exactly: double) { return .int(integer) }
        return .double(double)
    }

    /// The integer the digits spell, or nil when it does not fit in `Int64`.
    private func exactInteger(digits: Range<Int>, negative: Bool) -> Int64? {
        var value: Int64 = 0
        for position in digits {
            // Accumulating negatively reaches Int64.min, one further than the positive side.
            let (scaled, overflowed) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflowedAgain) = scaled.subtractingReportingOverflow(Int64(bytes[position] &- UInt8(ascii: "0")))
            guard !overflowed, !overflowedAgain else { return nil }
            value = sum
        }
        if negative { return value }
        return value == .min ? nil : -value
    }

    private mutating func skipDigits() {
        while let byte = peek(), isDigit(byte) { index += 1 }
    }

    private func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    // MARK: Strings

    /// A string starting at the opening quote; escapes decoded, UTF-8 validated.
    private mutating func readString() throws(JSONParseError) -> String {
        let start = index
        index += 1
        let contentStart = index
        // Fast path: no escapes, so the bytes are the string.
        while let byte = peek(), byte != UInt8(ascii: "\""), byte != UInt8(ascii: "\\") {
            guard byte >= 0x20 else { throw JSONParseError("not valid JSON: control character in a string at byte \(index)") }
            index += 1
        }
        guard let stop = peek() else { throw JSONParseError("not valid JSON: string starting at byte \(start) is not closed") }
        if stop == UInt8(ascii: "\"") {
            defer { index += 1 }
            return try Self.validatedString(UnsafeBufferPointer(rebasing: bytes[contentStart..<index]), startingAt: start)
        }
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: bytes[contentStart..<index])
        while true {
            guard let byte = peek() else { throw JSONParseError("not valid JSON: string starting at byte \(start) is not closed") }
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                return try scratch.withUnsafeBufferPointer { content throws(JSONParseError) in
                    try Self.validatedString(content, startingAt: start)
                }
            case UInt8(ascii: "\\"): try readEscape()
            case ..<0x20: throw JSONParseError("not valid JSON: control character in a string at byte \(index - 1)")
            default: scratch.append(byte)
            }
        }
    }

    private static func validatedString(_ content: UnsafeBufferPointer<UInt8>, startingAt start: Int) throws(JSONParseError) -> String {
        guard let string = String(validating: content, as: UTF8.self) else {
            throw JSONParseError("not valid JSON: string starting at byte \(start) is not valid UTF-8")
        }
        return string
    }

    /// One escape after its backslash, appended to `scratch` as UTF-8.
    private mutating func readEscape() throws(JSONParseError) {
        let escapeStart = index - 1
        guard let byte = peek() else { throw unexpected("where an escape should follow '\\'") }
        index += 1
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scratch.append(byte)
        case UInt8(ascii: "b"): scratch.append(0x08)
        case UInt8(ascii: "f"): scratch.append(0x0C)
        case UInt8(ascii: "n"): scratch.append(0x0A)
        case UInt8(ascii: "r"): scratch.append(0x0D)
        case UInt8(ascii: "t"): scratch.append(0x09)
        case UInt8(ascii: "u"):
            let unit = try readHexUnit()
            var scalarValue = UInt32(unit)
            if UTF16.isLeadSurrogate(unit) {
                guard bytes.count - index >= 2, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                    throw JSONParseError("not valid JSON: unpaired surrogate escape at byte \(escapeStart)")
                }
                index += 2
                let trail = try readHexUnit()
                guard UTF16.isTrailSurrogate(trail) else {
                    throw JSONParseError("not valid JSON: unpaired surrogate escape at byte \(escapeStart)")
                }
                scalarValue = 0x10000 + ((UInt32(unit) - 0xD800) << 10) + (UInt32(trail) - 0xDC00)
            } else if UTF16.isTrailSurrogate(unit) {
                throw JSONParseError("not valid JSON: unpaired surrogate escape at byte \(escapeStart)")
            }
            guard let scalar = Unicode.Scalar(scalarValue) else {
                throw JSONParseError("not valid JSON: bad \\u escape at byte \(escapeStart)")
            }
            UTF8.encode(scalar) { scratch.append($0) }
        default: throw JSONParseError("not valid JSON: unknown escape at byte \(escapeStart)")
        }
    }

    private mutating func readHexUnit() throws(JSONParseError) -> UInt16 {
        guard bytes.count - index >= 4 else { throw unexpected("where four hex digits should follow '\\u'") }
        var unit: UInt16 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw unexpected("where four hex digits should follow '\\u'")
            }
            unit = unit << 4 | UInt16(digit)
            index += 1
        }
        return unit
    }

    // MARK: Bytes

    private func peek() -> UInt8? {
        index < bytes.count ? bytes[index] : nil
    }

    private mutating func skipWhitespace() {
        while let byte = peek(), byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { index += 1 }
    }

    /// "not valid JSON: unexpected 'x' at byte N (context)", or "... unexpected end ..." past the last byte.
    private func unexpected(_ context: String) -> JSONParseError {
        guard let byte = peek() else { return JSONParseError("not valid JSON: unexpected end \(context)") }
        let shown = (0x21..<0x7F).contains(byte) ? "'\(Character(Unicode.Scalar(byte)))'" : "byte 0x\(String(byte, radix: 16))"
        return JSONParseError("not valid JSON: unexpected \(shown) at byte \(index) \(context)")
    }
}
