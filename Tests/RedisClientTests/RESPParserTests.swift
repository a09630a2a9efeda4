import NIOCore
import Testing

@testable import RedisClient

/// The RESP2 reply parser as a pure state machine: values, nesting, nulls, errors, any split, bounds.
@Suite struct RESPParserTests {
    /// Every value `text` holds, fed in one piece.
    private func parse(_ text: String, limits: RESPParser.Limits = .init()) throws -> [RESPValue] {
        try parse(pieces: [Array(text.utf8)], limits: limits)
    }

    private func parse(pieces: [[UInt8]], limits: RESPParser.Limits = .init()) throws -> [RESPValue] {
        var parser = RESPParser(limits: limits)
        var values: [RESPValue] = []
        for piece in pieces {
            parser.append(ByteBuffer(bytes: piece))
            while let value = try parser.next() { values.append(value) }
        }
        return values
    }

    static let sample = "+OK\r\n-ERR wrong\r\n:-42\r\n$5\r\nhe\r\no\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n"
        + "*3\r\n:1\r\n*2\r\n$1\r\na\r\n*1\r\n$-1\r\n+x\r\n*2\r\n*0\r\n*1\r\n*0\r\n"

    static let expected: [RESPValue] = [
        .simpleString("OK"), .error("ERR wrong"), .integer(-42), .bulk("he\r\no"), .bulk(""), .bulkString(nil),
        .array(nil), .array([]),
        .array([.integer(1), .array([.bulk("a"), .array([.bulkString(nil)])]), .simpleString("x")]),
        .array([.array([]), .array([.array([])])]),
    ]

    @Test func readsEveryKindOfValue() throws {
        #expect(try parse(Self.sample) == Self.expected)
    }

    @Test func aStreamSplitAtEveryByteGivesTheSameValues() throws {
        let bytes = Array(Self.sample.utf8)
        for split in 1..<bytes.count {
            #expect(try parse(pieces: [Array(bytes[..<split]), Array(bytes[split...])]) == Self.expected, "split at \(split)")
        }
        #expect(try parse(pieces: bytes.map { [$0] }) == Self.expected, "one byte at a time")
    }

    @Test func incompleteValuesWaitForTheirBytes() throws {
        var parser = RESPParser()
        parser.append(ByteBuffer(string: "*2\r\n$3\r\nfo"))
        #expect(try parser.next() == nil)
        parser.append(ByteBuffer(string: "o\r\n"))
        #expect(try parser.next() == nil, "the array still needs its second element")
        parser.append(ByteBuffer(string: ":7\r\n+next"))
        #expect(try parser.next() == .array([.bulk("foo"), .integer(7)]))
        #expect(try parser.next() == nil)
        parser.append(ByteBuffer(string: "\r\n"))
        #expect(try parser.next() == .simpleString("next"))
    }

    @Test(arguments: [
        ("?what\r\n", "unknown RESP type byte"),
        (":12x\r\n", "bad integer"),
        ("$-5\r\n", "bad bulk length"),
        ("$3\r\nabcd\r\n", "not followed by CRLF"),
        ("*-2\r\n", "bad array length"),
        ("+OK\rX", "CR not followed by LF"),
    ])
    func malformedInputIsAProtocolError(input: String, message: String) {
        #expect {
            _ = try parse(input)
        } throws: { error in
            (error as? RESPParser.ProtocolError)?.description.contains(message) == true
        }
    }

    @Test func boundsRefuseWhatWouldHoldTooMuch() throws {
        let limits = RESPParser.Limits(maxBulkBytes: 10, maxArrayCount: 3, maxDepth: 2, maxLineBytes: 8)
        #expect(throws: RESPParser.ProtocolError.self) { try parse("$11\r\n", limits: limits) }
        #expect(throws: RESPParser.ProtocolError.self) { try parse("*4\r\n", limits: limits) }
        #expect(throws: RESPParser.ProtocolError.self) { try parse("*1\r\n*1\r\n*1\r\n:1\r\n", limits: limits) }
        #expect(throws: RESPParser.ProtocolError.self) { try parse("+" + String(repeating: "a", count: 20), limits: limits) }
        #expect(try parse("$10\r\n0123456789\r\n", limits: limits) == [.bulk("0123456789")], "at the limit is fine")
    }

    @Test func commandsAreWrittenAsArraysOfBulkStrings() {
        var buffer = ByteBuffer()
        buffer.writeRESPCommand(["SET", "kéy", RESPArgument(ByteBuffer(string: "v\r\n")), 42])
        #expect(String(buffer: buffer) == "*4\r\n$3\r\nSET\r\n$4\r\nkéy\r\n$3\r\nv\r\n\r\n$2\r\n42\r\n")
    }

    @Test func urlsCarryHostPortCredentialsAndDatabase() throws {
        #expect(try RedisURL(parsing: "redis://127.0.0.1:6380") == RedisURL(host: "127.0.0.1", port: 6380))
        #expect(try RedisURL(parsing: "redis://localhost") == RedisURL(host: "localhost", port: 6379))
        #expect(
            try RedisURL(parsing: "redis://ops:p%40ss@10.0.0.5:7000/3")
                == RedisURL(host: "10.0.0.5", port: 7000, username: "ops", password: "p@ss", database: 3))
        #expect(try RedisURL(parsing: "redis://:secret@h/1") == RedisURL(host: "h", password: "secret", database: 1))
        #expect(try RedisURL(parsing: "redis://[::1]:6379") == RedisURL(host: "::1"))
        #expect(throws: RedisURL.ParseError.self) { try RedisURL(parsing: "http://h") }
        #expect(throws: RedisURL.ParseError.self) { try RedisURL(parsing: "rediss://h") }
        #expect(throws: RedisURL.ParseError.self) { try RedisURL(parsing: "redis://h:99999") }
        #expect(throws: RedisURL.ParseError.self) { try RedisURL(parsing: "redis://h/x") }
        #expect(try RedisURL(parsing: "redis://u:pw@h:1/2").description == "redis://u:***@h:1/2", "no password in logs")
    }
}
