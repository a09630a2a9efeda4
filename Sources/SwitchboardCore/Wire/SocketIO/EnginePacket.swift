import FoundationEssentials
public import NIOCore

/// One Engine.IO 4 packet (SPEC §9): a type digit and its data, as one WebSocket frame or one record of a
/// long-polling body. Binary message packets (a binary WebSocket frame, or `b` + base64 in a polling body)
/// carry their bytes with no type digit.
public struct EnginePacket: Sendable, Equatable {
    public enum Kind: UInt8, Sendable {
        case open = 0, close, ping, pong, message, upgrade, noop
    }

    public var kind: Kind
    /// The text after the type digit (UTF-8), or the bytes of a binary message.
    public var data: [UInt8]
    public var isBinary: Bool

    public init(_ kind: Kind, data: [UInt8] = [], isBinary: Bool = false) {
        self.kind = kind
        self.data = data
        self.isBinary = isBinary
    }

    public init(_ kind: Kind, text: String) {
        self.init(kind, data: Array(text.utf8))
    }

    /// The data as text (binary data is not text: nil).
    public var text: String? { isBinary ? nil : String(validating: data, as: UTF8.self) }

    /// A text packet: its type digit, then its data (a WebSocket text frame, or one polling record that does not
    /// start with `b`).
    public static func decode(text bytes: some Collection<UInt8>) throws(EngineIOError) -> EnginePacket {
        guard let first = bytes.first else { throw EngineIOError("empty packet") }
        guard first >= UInt8(ascii: "0"), let kind = Kind(rawValue: first - UInt8(ascii: "0")) else {
            throw EngineIOError("unknown packet type")
        }
        return EnginePacket(kind, data: Array(bytes.dropFirst()))
    }

    /// A binary WebSocket frame: a message packet with these bytes.
    public static func binary(_ bytes: [UInt8]) -> EnginePacket {
        EnginePacket(.message, data: bytes, isBinary: true)
    }

    /// The packet as a WebSocket text frame's payload or a polling record (binary: `b` + base64).
    public func write(into buffer: inout ByteBuffer) {
        if isBinary {
            buffer.writeInteger(UInt8(ascii: "b"))
            buffer.writeString(Base64.encode(data))
        } else {
            buffer.writeInteger(UInt8(ascii: "0") + kind.rawValue)
            buffer.writeBytes(data)
        }
    }
}

/// A long-polling body: packets separated by the record separator 0x1E (SPEC §9).
public enum EnginePayload {
    public static let separator: UInt8 = 0x1E

    /// Most packets accepted in one POST body.
    public static let maxPackets = 256

    /// The packets of a POSTed body of at most `maxBytes` (the session's `maxPayload`).
    public static func decode(_ body: some Collection<UInt8>, maxBytes: Int) throws(EngineIOError) -> [EnginePacket] {
        guard body.count <= maxBytes else { throw EngineIOError("payload of \(body.count) bytes is over maxPayload \(maxBytes)") }
        var packets: [EnginePacket] = []
        for record in body.split(separator: separator, omittingEmptySubsequences: false) {
            guard packets.count < maxPackets else { throw EngineIOError("more than \(maxPackets) packets in one payload") }
            if record.first == UInt8(ascii: "b") {
                guard let bytes = Base64.decode(record.dropFirst()) else { throw EngineIOError("bad base64 in a binary packet") }
                packets.append(.binary(bytes))
            } else {
                packets.append(try EnginePacket.decode(text: record))
            }
        }
        return packets
    }

    /// A body holding `packets`, for a held GET's answer.
    public static func encode(_ packets: [EnginePacket], into buffer: inout ByteBuffer) {
        for (index, packet) in packets.enumerated() {
            if index > 0 { buffer.writeInteger(separator) }
            packet.write(into: &buffer)
        }
    }
}

/// A packet or payload that is not Engine.IO 4.
public struct EngineIOError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// Standard base64 (RFC 4648, with padding), for Engine.IO's binary packets in polling bodies: Foundation's.
enum Base64 {
    static func encode(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
    }

    /// nil when `text` is not padded base64.
    static func decode(_ text: some Collection<UInt8>) -> [UInt8]? {
        Data(base64Encoded: Data(text)).map { Array($0) }
    }
}
