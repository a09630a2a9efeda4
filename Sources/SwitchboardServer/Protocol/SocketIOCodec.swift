import NIOCore
import SwitchboardCore

/// The Socket.IO codec (SPEC §9): deliveries and replies as Engine.IO message packets carrying Socket.IO
/// packets. A Socket.IO delivery's ``Delivery/payload`` is the Engine.IO packet's text (type digit first, as
/// one polling record) and its ``Delivery/frame`` the same text as a WebSocket text frame.
enum SocketIOCodec {
    /// A channel message as the WebSocket text frame of `42["<event>",{"channel":…,"data":…,"seq":N,"ts":N}]`,
    /// encoded from the message's fields (``Message``). Built once per delivery and shared by every Socket.IO
    /// recipient (``Delivery/frame(_:encodedBy:)``); a reply's own frame (already a Socket.IO packet) otherwise.
    static func messageFrame(of delivery: Delivery) -> ByteBuffer {
        guard let message = delivery.message else { return delivery.frame }
        return delivery.frame(.socketIO) { _ in WebSocketWireFrame.frame(.text, payload: messagePacket(message)) }
    }

    /// The Engine.IO packet text of a message delivery's Socket.IO frame (a view of the same storage).
    static func messagePacket(of delivery: Delivery) -> ByteBuffer {
        WebSocketWireFrame.payload(of: messageFrame(of: delivery))
    }

    /// `42[E,{"channel":C,"data":D,"seq":N,"ts":T}]`: an Engine.IO message packet (`4`) carrying a Socket.IO
    /// EVENT (`2`) named like the message's event, its one argument the message without `type` and `event`.
    static func messagePacket(_ message: Message) -> ByteBuffer {
        var packet = ByteBuffer()
        packet.reserveCapacity(64 + (message.channel?.utf8.count ?? 4) + message.event.utf8.count + message.data.readableBytes)
        packet.writeStaticString("42[")
        packet.writeJSONString(message.event)
        packet.writeStaticString(",{\"channel\":")
        if let channel = message.channel { packet.writeJSONString(channel) } else { packet.writeStaticString("null") }
        packet.writeStaticString(",\"data\":")
        packet.writeImmutableBuffer(message.data)
        packet.writeStaticString(",\"seq\":")
        packet.writeDecimal(message.seq)
        packet.writeStaticString(",\"ts\":")
        packet.writeDecimal(message.timestampMs)
        packet.writeStaticString("}]")
        return packet
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
        case .unsubscribed(let channel, let reason):
            name = "unsubscribed"
            fields = ["channel": .string(channel)]
            if let reason { fields["reason"] = .string(reason) }
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
