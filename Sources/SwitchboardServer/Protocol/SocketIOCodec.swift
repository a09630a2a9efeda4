import NIOCore
import SwitchboardCore

/// The Socket.IO codec (SPEC §9): deliveries and replies as Engine.IO message packets carrying Socket.IO
/// packets. A Socket.IO delivery's ``Delivery/payload`` is the Engine.IO packet's text (type digit first, as
/// one polling record) and its ``Delivery/frame`` the same text as a WebSocket text frame.
enum SocketIOCodec {
    /// A channel message (`Delivery.isMessage`, natively encoded) as the WebSocket text frame of
    /// `42["<event>",{"channel":…,"data":…,"seq":N,"ts":N}]`. Built once per delivery and shared by every
    /// Socket.IO recipient (``Delivery/frame(_:encodedBy:)``); nil if the native text is not a message.
    static func messageFrame(of delivery: Delivery) -> ByteBuffer {
        delivery.frame(.socketIO) { delivery in
            guard let packet = messagePacket(fromNative: delivery.payload) else { return ByteBuffer() }
            return WebSocketWireFrame.frame(.text, payload: packet)
        }
    }

    /// The Engine.IO packet text of a message delivery's Socket.IO frame (a view of the same storage).
    static func messagePacket(of delivery: Delivery) -> ByteBuffer {
        let frame = messageFrame(of: delivery)
        return WebSocketWireFrame.payload(of: frame)
    }

    /// Rewrites `{"type":"message","channel":C,"event":E,"data":D,"seq":N,"ts":T}` (``Publication``'s fixed
    /// layout) as `42[E,{"channel":C,"data":D,"seq":N,"ts":T}]` by cutting it at its fields: no JSON parse.
    static func messagePacket(fromNative native: ByteBuffer) -> ByteBuffer? {
        let bytes = native.readableBytesView
        let head = Array("{\"type\":\"message\",\"channel\":".utf8)
        let eventKey = Array(",\"event\":".utf8)
        let dataKey = Array(",\"data\":".utf8)
        guard bytes.starts(with: head) else { return nil }
        let channelStart = bytes.startIndex + head.count
        guard let channelEnd = endOfValue(in: bytes, at: channelStart),
            bytes[channelEnd...].starts(with: eventKey)
        else { return nil }
        let eventStart = channelEnd + eventKey.count
        guard let eventEnd = endOfValue(in: bytes, at: eventStart), bytes[eventEnd...].starts(with: dataKey) else { return nil }
        var packet = ByteBuffer()
        packet.reserveCapacity(bytes.count + 8)
        packet.writeStaticString("42[")
        packet.writeBytes(bytes[eventStart..<eventEnd])
        packet.writeStaticString(",{\"channel\":")
        packet.writeBytes(bytes[channelStart..<channelEnd])
        // From `,"data":` to the closing brace of the native object, then the array's end.
        packet.writeBytes(bytes[eventEnd...])
        packet.writeStaticString("]")
        return packet
    }

    /// The end of the JSON string (or `null`) starting at `start`.
    private static func endOfValue(in bytes: ByteBufferView, at start: Int) -> Int? {
        guard start < bytes.endIndex else { return nil }
        if bytes[start...].starts(with: "null".utf8) { return start + 4 }
        guard bytes[start] == UInt8(ascii: "\"") else { return nil }
        var index = start + 1
        while index < bytes.endIndex {
            switch bytes[index] {
            case UInt8(ascii: "\\"): index += 2
            case UInt8(ascii: "\""): return index + 1
            default: index += 1
            }
        }
        return nil
    }

    /// A Socket.IO packet as a delivery (Engine.IO message packet `4` + the packet).
    static func delivery(_ packet: SocketPacket) -> Delivery {
        var buffer = ByteBuffer()
        buffer.writeStaticString("4")
        packet.write(into: &buffer)
        return Delivery(payload: buffer)
    }

    /// A reply: an ACK of the request's event when it asked for one (`[{"ok":true,...}]`, or
    /// `[{"ok":false,"code","message"}]` for an error), else an event named like the native reply's `type`
    /// (`subscribed`, `error`, ...) with the same object.
    static func encode(_ reply: SessionReply, id: RequestID?) -> Delivery {
        var fields: [String: JSONValue]
        let name: String
        switch reply {
        case .authenticated(let identity):
            name = "authenticated"
            fields = [
                "role": .string(identity.role.rawValue), "userId": identity.userId.map(JSONValue.string) ?? .null,
                "tier": identity.tier.map(JSONValue.string) ?? .null,
            ]
        case .subscribed(let channel, let epoch, let recovered):
            name = "subscribed"
            fields = ["channel": .string(channel), "epoch": .string(epoch)]
            if let recovered { fields["recovered"] = .bool(recovered) }
        case .unsubscribed(let channel):
            name = "unsubscribed"
            fields = ["channel": .string(channel)]
        case .published(let channel, let seq):
            name = "published"
            fields = ["channel": .string(channel), "seq": seq.map { JSONValue.int(Int64($0)) } ?? .null]
        case .pong:
            name = "pong"
            fields = [:]
        case .error(let code, let message):
            name = "error"
            fields = ["code": .string(code.description), "message": .string(message)]
        }
        if case .int(let ackId)? = id, ackId >= 0 {
            fields["ok"] = .bool(name != "error")
            return delivery(SocketIOSession.ack(UInt64(ackId), .object(fields)))
        }
        return delivery(SocketPacket(.event, payload: .array([.string(name), .object(fields)])))
    }

    /// An Engine.IO packet as a WebSocket text frame.
    static func frame(_ packet: EnginePacket) -> ByteBuffer {
        var payload = ByteBuffer()
        packet.write(into: &payload)
        return WebSocketWireFrame.frame(packet.isBinary ? .binary : .text, payload: payload)
    }
}
