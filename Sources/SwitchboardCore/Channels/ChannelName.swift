/// A validated channel name: `namespace` or `namespace:topic` (SPEC §4).
public struct ChannelName: Sendable, Hashable, CustomStringConvertible {
    /// Longest channel name accepted, in bytes.
    public static let maxLength = 128

    public let namespace: Substring
    public let topic: Substring?
    /// The full name as the client sent it.
    public let description: String

    /// Parses `name`; returns `nil` unless it is one or two non-empty parts of `[A-Za-z0-9_.-]`
    /// separated by one `:`, at most ``maxLength`` bytes in all.
    public init?(_ name: String) {
        guard !name.isEmpty, name.utf8.count <= Self.maxLength else { return nil }
        let parts = name.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count <= 2, parts.allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy(Self.isNameByte) }) else {
            return nil
        }
        self.description = name
        self.namespace = parts[0]
        self.topic = parts.count == 2 ? parts[1] : nil
    }

    private static func isNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "-"):
            true
        default:
            false
        }
    }
}
