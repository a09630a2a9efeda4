public import NIOCore

/// One Socket.IO 5 packet, the data of an Engine.IO message packet (SPEC §9):
/// `<type>[<attachments>-][<namespace>,][<ack id>][JSON]`, the namespace left out for `/`.
///
/// Binary events and acks (types 5 and 6, with attachments) are refused: Switchboard carries JSON only.
public struct SocketPacket: Sendable, Equatable {
    public enum Kind: UInt8, Sendable {
        case connect = 0, disconnect, event, ack, connectError, binaryEvent, binaryAck
    }

    public var kind: Kind
    public var namespace: String
    public var ackId: UInt64?
    public var payload: JSONValue?

    public init(_ kind: Kind, namespace: String = "/", ackId: UInt64? = nil, payload: JSONValue? = nil) {
        self.kind = kind
        self.namespace = namespace
        self.ackId = ackId
        self.payload = payload
    }

    /// Longest namespace accepted (a client naming a longer one gets the same refusal as any unknown one).
    public static let maxNamespaceBytes = 256
    /// Ack ids are JavaScript integers: at most 2^53.
    public static let maxAckId: UInt64 = 1 << 53

    /// Decodes a packet, checking each type's payload: CONNECT an object or nothing, DISCONNECT nothing, EVENT
    /// a non-empty array whose first element is the event name, ACK an array, CONNECT_ERROR an object.
    public static func decode(_ bytes: some Collection<UInt8>) throws(SocketIOError) -> SocketPacket {
        let bytes = Array(bytes)
        var index = 0
        guard let first = bytes.first, first >= UInt8(ascii: "0"), let kind = Kind(rawValue: first - UInt8(ascii: "0")) else {
            throw SocketIOError("unknown packet type")
        }
        index += 1
        if kind == .binaryEvent || kind == .binaryAck { throw SocketIOError("binary packets are not supported") }
        var namespace = "/"
        if index < bytes.count, bytes[index] == UInt8(ascii: "/") {
            // Up to a comma, or to the end when nothing follows the namespace.
            let end = bytes[index...].firstIndex(of: UInt8(ascii: ",")) ?? bytes.count
            namespace = try text(bytes[index..<end])
            index = min(end + 1, bytes.count)
        }
        var ackId: UInt64?
        while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) {
            let digit = UInt64(bytes[index] - UInt8(ascii: "0"))
            let value = (ackId ?? 0) * 10 + digit
            guard value <= maxAckId else { throw SocketIOError("ack id too large") }
            ackId = value
            index += 1
        }
        var payload: JSONValue?
        if index < bytes.count {
            do {
                payload = try JSONValue.parse(bytes[index...])
            } catch {
                throw SocketIOError("invalid JSON: \(error.message)")
            }
        }
        return try validated(SocketPacket(kind, namespace: namespace, ackId: ackId, payload: payload))
    }

    private static func text(_ bytes: ArraySlice<UInt8>) throws(SocketIOError) -> String {
        guard bytes.count <= maxNamespaceBytes, let text = String(validating: bytes, as: UTF8.self) else {
            throw SocketIOError("invalid namespace")
        }
        return text
    }

    private static func validated(_ packet: SocketPacket) throws(SocketIOError) -> SocketPacket {
        switch (packet.kind, packet.payload) {
        case (.connect, nil), (.connect, .object?), (.disconnect, nil), (.ack, .array?), (.connectError, .object?):
            return packet
        case (.event, .array(let arguments)?):
            guard case .string? = arguments.first else { throw SocketIOError("an event's first element must be its name") }
            return packet
        case (.connect, _): throw SocketIOError("CONNECT data must be an object")
        case (.disconnect, _): throw SocketIOError("DISCONNECT carries no data")
        case (.event, _): throw SocketIOError("EVENT data must be an array: [name, ...arguments]")
        case (.ack, _): throw SocketIOError("ACK data must be an array")
        case (.connectError, _): throw SocketIOError("CONNECT_ERROR data must be an object")
        case (.binaryEvent, _), (.binaryAck, _): throw SocketIOError("binary packets are not supported")
        }
    }

    /// The event name and arguments of an EVENT.
    public var event: (name: String, arguments: [JSONValue])? {
        guard kind == .event, case .array(let values)? = payload, case .string(let name)? = values.first else { return nil }
        return (name, Array(values.dropFirst()))
    }

    /// The packet's text, as the data of an Engine.IO message packet.
    public func write(into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(ascii: "0") + kind.rawValue)
        if namespace != "/" {
            buffer.writeString(namespace)
            buffer.writeStaticString(",")
        }
        if let ackId { buffer.writeDecimal(ackId) }
        payload?.write(into: &buffer)
    }

    /// Event names the Socket.IO client reserves: a client that receives one drops the connection, so they are
    /// never delivered and refused at publish on every path (SPEC §9).
    public static let reservedEventNames: Set<String> = [
        "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener",
    ]
}

/// A Socket.IO packet that cannot be taken.
public struct SocketIOError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}
