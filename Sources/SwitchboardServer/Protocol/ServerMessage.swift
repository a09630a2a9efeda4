import NIOCore
import SwitchboardCore

/// A reply of the session protocol (SPEC §3) before a codec encodes it: the native codec as a JSON frame
/// (``ServerMessage``), the Socket.IO codec as an ACK (``SocketIOCodec``).
enum SessionReply: Sendable, Equatable {
    case authenticated(Identity)
    case subscribed(channel: String, epoch: String, recovered: Bool?)
    /// `reason` when the server removed the subscription (SPEC §14), nil when the client asked.
    case unsubscribed(channel: String, reason: String? = nil)
    /// `seq` is null when the message was held by the throttle or had nobody to go to.
    case published(channel: String, seq: UInt64?)
    case pong
    case error(ErrorCode, String)
}

/// Server -> client frames of the native protocol (SPEC §3), encoded straight to bytes.
enum ServerMessage {
    /// `reply` as a native frame carrying the request's `id`.
    static func encode(_ reply: SessionReply, id: RequestID?) -> Delivery {
        switch reply {
        case .authenticated(let identity): authenticated(identity, id: id)
        case .subscribed(let channel, let epoch, let recovered): subscribed(channel: channel, epoch: epoch, recovered: recovered, id: id)
        case .unsubscribed(let channel, let reason): unsubscribed(channel: channel, reason: reason, id: id)
        case .published(let channel, let seq): published(channel: channel, seq: seq, id: id)
        case .pong: pong(id: id)
        case .error(let code, let message): error(code, message, id: id)
        }
    }

    static func welcome(connectionId: String, identity: Identity, heartbeatMs: Int) -> Delivery {
        encode { buffer in
            buffer.writeStaticString("{\"type\":\"welcome\",\"connectionId\":")
            buffer.writeJSONString(connectionId)
            writeIdentity(identity, into: &buffer)
            buffer.writeStaticString(",\"heartbeatMs\":")
            buffer.writeDecimal(heartbeatMs)
        }
    }

    static func authenticated(_ identity: Identity, id: RequestID?) -> Delivery {
        encode(type: "authenticated", id: id) { buffer in
            writeIdentity(identity, into: &buffer)
            buffer.writeStaticString(",\"tier\":")
            writeOptionalString(identity.tier, into: &buffer)
        }
    }

    static func subscribed(channel: String, epoch: String, recovered: Bool?, id: RequestID?) -> Delivery {
        encode(type: "subscribed", id: id) { buffer in
            buffer.writeStaticString(",\"channel\":")
            buffer.writeJSONString(channel)
            buffer.writeStaticString(",\"epoch\":")
            buffer.writeJSONString(epoch)
            if let recovered { buffer.writeString(recovered ? ",\"recovered\":true" : ",\"recovered\":false") }
        }
    }

    static func unsubscribed(channel: String, reason: String?, id: RequestID?) -> Delivery {
        encode(type: "unsubscribed", id: id) { buffer in
            buffer.writeStaticString(",\"channel\":")
            buffer.writeJSONString(channel)
            if let reason {
                buffer.writeStaticString(",\"reason\":")
                buffer.writeJSONString(reason)
            }
        }
    }

    /// `seq` is null when the message was held by the throttle or had nobody to go to.
    static func published(channel: String, seq: UInt64?, id: RequestID?) -> Delivery {
        encode(type: "published", id: id) { buffer in
            buffer.writeStaticString(",\"channel\":")
            buffer.writeJSONString(channel)
            buffer.writeStaticString(",\"seq\":")
            if let seq { buffer.writeDecimal(seq) } else { buffer.writeStaticString("null") }
        }
    }

    static func pong(id: RequestID?) -> Delivery {
        encode(type: "pong", id: id) { _ in }
    }

    static func error(_ code: ErrorCode, _ message: String, id: RequestID?) -> Delivery {
        encode(type: "error", id: id) { buffer in
            buffer.writeStaticString(",\"code\":")
            buffer.writeJSONString(code.description)
            buffer.writeStaticString(",\"message\":")
            buffer.writeJSONString(message)
        }
    }

    private static func encode(type: String, id: RequestID?, fields: (inout ByteBuffer) -> Void) -> Delivery {
        encode { buffer in
            buffer.writeStaticString("{\"type\":")
            buffer.writeJSONString(type)
            fields(&buffer)
            if let id {
                buffer.writeStaticString(",\"id\":")
                switch id {
                case .string(let text): buffer.writeJSONString(text)
                case .int(let number): buffer.writeDecimal(number)
                }
            }
        }
    }

    private static func encode(_ body: (inout ByteBuffer) -> Void) -> Delivery {
        var buffer = ByteBuffer()
        body(&buffer)
        buffer.writeStaticString("}")
        return Delivery(payload: buffer)
    }

    private static func writeIdentity(_ identity: Identity, into buffer: inout ByteBuffer) {
        buffer.writeStaticString(",\"role\":")
        buffer.writeJSONString(identity.role.rawValue)
        buffer.writeStaticString(",\"userId\":")
        writeOptionalString(identity.userId, into: &buffer)
    }

    private static func writeOptionalString(_ value: String?, into buffer: inout ByteBuffer) {
        if let value { buffer.writeJSONString(value) } else { buffer.writeStaticString("null") }
    }
}
