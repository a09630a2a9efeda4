import Foundation
import Testing

@testable import SwitchboardCore

/// The hand-written JSON reader: RFC 8259 strictness, exact numbers, escapes, depth, and agreement with
/// Foundation's `JSONSerialization` on what it accepts.
@Suite struct JSONReaderTests {
    private func parse(_ text: String) throws(JSONParseError) -> JSONValue {
        try JSONValue.parse(Array(text.utf8))
    }

    @Test func readsEveryKindOfValue() throws {
        let value = try parse(#" {"a": [1, -2, 3.5, true, false, null], "b": {"c": "d"}, "e": ""} "#)
        #expect(
            value
                == .object([
                    "a": .array([.int(1), .int(-2), .double(3.5), .bool(true), .bool(false), .null]),
                    "b": .object(["c": .string("d")]),
                    "e": .string(""),
                ]))
        #expect(try parse("[]") == .array([]))
        #expect(try parse("{}") == .object([:]))
        #expect(try parse("\t\r\n 7 \n") == .int(7))
    }

    @Test(arguments: [
        ("0", JSONValue.int(0)), ("-0", .int(0)), ("-0.0", .int(0)), ("1e2", .int(100)), ("1E+2", .int(100)),
        ("100.0", .int(100)), ("2.5e-1", .double(0.25)), ("9223372036854775807", .int(.max)),
        ("-9223372036854775808", .int(.min)), ("9223372036854775808", .double(9_223_372_036_854_775_808)),
        ("-9223372036854775809", .int(.min)), ("123456789012345678901234567890", .double(1.2345678901234568e29)),
        ("0.1", .double(0.1)), ("1e-400", .int(0)),
    ])
    func numbersAreExactIntegersOrCorrectlyRoundedDoubles(text: String, expected: JSONValue) throws {
        #expect(try parse(text) == expected)
    }

    @Test func escapesDecodeToTheirCharacters() throws {
        #expect(try parse(#""\"\\\/\b\f\n\r\t""#) == .string("\"\\/\u{8}\u{C}\n\r\t"))
        #expect(try parse(#""caf\u00e9 \u20AC \ud83d\ude00 \u0000""#) == .string("café € 😀 \u{0}"))
        #expect(try parse("\"café 😀\"") == .string("café 😀"))
    }

    @Test(arguments: [
        ("", "unexpected end"), (" ", "unexpected end"), ("[1,]", "unexpected ']' at byte 3"), (#"{"a":1,}"#, "at byte 7"),
        ("01", "unexpected '1' at byte 1"), ("1.", "digit should follow '.'"), ("-", "digit should follow '-'"), (".5", "at byte 0"),
        ("+1", "at byte 0"), ("tru", "at byte 0"), ("nul", "at byte 0"), ("NaN", "at byte 0"), ("Infinity", "at byte 0"),
        (#""abc"#, "not closed"), (#""\x""#, "unknown escape"), (#""\u12""#, "four hex digits"), (#""\ud800""#, "unpaired surrogate"),
        (#""\udc00""#, "unpaired surrogate"), (#""\ud800\u0041""#, "unpaired surrogate"), ("\"a\u{1}\"", "control character"),
        ("1 2", "after the value"), ("{1:2}", "object key"), (#"{"a" 1}"#, "':'"), ("[1 2]", "',' or ']'"), ("1e400", "out of range"),
        ("-1e400", "out of range"), ("// c\n1", "at byte 0"), ("[1]]", "after the value"),
    ])
    func malformedTextIsRefusedWithWhereItWentWrong(text: String, expected: String) {
        #expect {
            try parse(text)
        } throws: { error in
            let message = (error as? JSONParseError)?.message ?? ""
            return message.hasPrefix("not valid JSON") && message.contains(expected)
        }
    }

    @Test func invalidUTF8InAStringIsRefused() {
        for bytes: [UInt8] in [[0x22, 0xC0, 0x80, 0x22], [0x22, 0xFF, 0x22], [0x22, 0x5C, 0x6E, 0xED, 0xA0, 0x80, 0x22]] {
            #expect(throws: JSONParseError.self) { try JSONValue.parse(bytes) }
        }
    }

    @Test func nestingIsLimitedWithoutRecursingIntoIt() throws {
        let deepest = String(repeating: "[", count: JSONValue.maxDepth) + String(repeating: "]", count: JSONValue.maxDepth)
        #expect(throws: Never.self) { try parse(deepest) }
        for text in ["[" + deepest + "]", String(repeating: "[", count: 1_000_000), String(repeating: #"{"a":"#, count: 100_000)] {
            #expect { try parse(text) } throws: { ($0 as? JSONParseError)?.message.contains("nested deeper than 32") == true }
        }
    }

    @Test func aRepeatedKeyKeepsItsLastValueAsInJavaScript() throws {
        #expect(try parse(#"{"a":1,"b":2,"a":3}"#) == .object(["a": .int(3), "b": .int(2)]))
    }

    @Test func aLeadingByteOrderMarkIsSkipped() throws {
        #expect(try JSONValue.parse([0xEF, 0xBB, 0xBF] + Array("[1]".utf8)) == .array([.int(1)]))
    }

    @Test func bytesNeedNotBeContiguous() throws {
        #expect(try JSONValue.parse(AnyCollection(Array(#"{"k":"v"}"#.utf8))) == .object(["k": .string("v")]))
    }

    /// Random documents: every value printed by `jsonText` reads back equal, and Foundation reads the same text
    /// to the same structure (doubles within an ulp).
    @Test func agreesWithFoundationOnRandomDocuments() throws {
        var generator = SeededGenerator(seed: 0x5157_4954_4348)
        for _ in 0..<500 {
            let value = Self.randomValue(depth: 0, using: &generator)
            let text = value.jsonText
            let read = try parse(text)
            #expect(read == value, "\(text)")
            let foundation = try JSONSerialization.jsonObject(with: Data(text.utf8), options: .fragmentsAllowed)
            #expect(Self.matches(read, foundation), "\(text)")
        }
    }

    private static func randomValue(depth: Int, using generator: inout SeededGenerator) -> JSONValue {
        let pick = Int.random(in: 0..<(depth < 4 ? 8 : 6), using: &generator)
        switch pick {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &generator))
        case 2: return .int(Int64.random(in: .min ... .max, using: &generator) >> Int64.random(in: 0..<63, using: &generator))
        case 3:
            let double = Double.random(in: -1e6...1e6, using: &generator)
            return Int64(exactly: double).map(JSONValue.int) ?? .double(double)
        case 4, 5: return .string(randomString(using: &generator))
        case 6: return .array((0..<Int.random(in: 0..<5, using: &generator)).map { _ in randomValue(depth: depth + 1, using: &generator) })
        default:
            var members: [String: JSONValue] = [:]
            for _ in 0..<Int.random(in: 0..<5, using: &generator) {
                members[randomString(using: &generator)] = randomValue(depth: depth + 1, using: &generator)
            }
            return .object(members)
        }
    }

    private static func randomString(using generator: inout SeededGenerator) -> String {
        let alphabet: [Unicode.Scalar] = ["a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\u{0}", "\u{1F}", "\u{7F}", "é", "€", "😀", "\u{FFFF}"]
        var string = ""
        for _ in 0..<Int.random(in: 0..<8, using: &generator) {
            string.unicodeScalars.append(alphabet[Int.random(in: 0..<alphabet.count, using: &generator)])
        }
        return string
    }

    private static func matches(_ value: JSONValue, _ foundation: Any) -> Bool {
        switch value {
        case .null: return foundation is NSNull
        case .bool(let bool): return (foundation as? Bool) == bool
        case .int(let int): return (foundation as? NSNumber)?.int64Value == int
        case .double(let double):
            // Foundation on Linux may miss the correctly rounded double by an ulp; exactness is the round trip's check.
            guard let other = (foundation as? NSNumber)?.doubleValue else { return false }
            return abs(other - double) <= abs(double) * 1e-15
        case .string(let string): return (foundation as? String) == string
        case .array(let elements):
            guard let array = foundation as? [Any], array.count == elements.count else { return false }
            return zip(elements, array).allSatisfy { matches($0, $1) }
        case .object(let members):
            guard let object = foundation as? [String: Any], object.count == members.count else { return false }
            return members.allSatisfy { key, member in object[key].map { matches(member, $0) } ?? false }
        }
    }
}

/// A small deterministic generator (SplitMix64), so a failing document can be reproduced.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}
