import NIOCore
import SwitchboardCore

/// A WebSocket's inbound side as a pure state machine (RFC 6455 §5, §7): bytes in, whole messages and
/// control events out. The one frame loop of every WebSocket the node serves, `/ws` and Engine.IO's alike.
///
/// It enforces what a server must: masked client frames, no interleaved messages, continuation only inside a
/// message, control frames whole and short, close codes that may appear on the wire, and
/// `max-message-bytes` per message. Every frame of a fragmented message is charged its header as well as its
/// payload, so a stream of empty continuation frames fills the message's budget like any other bytes and
/// ends the connection with 1009 instead of costing CPU without bound (SPEC §13).
struct WebSocketInbound {
    /// What the client's bytes amount to.
    enum Event: Equatable {
        /// A whole data message (its fragments joined), still compressed when `compressed`.
        case message(ByteBuffer, isText: Bool, compressed: Bool)
        /// A ping: answer with a pong carrying `payload` (only the latest needs an answer, RFC 6455 §5.5.3).
        case ping(payload: ByteBuffer)
        /// A pong (an answer to our heartbeat).
        case pong
        /// The client's close frame: answer with `reply` and end the connection (RFC 6455 §5.5.1).
        case close(reply: UInt16)
        /// The input broke the protocol or a bound: fail the connection with `code` (RFC 6455 §7.1.7).
        case fail(CloseCode, reason: String)
    }

    /// What each frame costs a message's budget beyond its payload: the smallest masked client frame header.
    static let frameOverhead = 6

    private var parser: InboundFrameParser
    /// The largest message (and frame) taken: `max-message-bytes`.
    var maxMessageBytes: Int { parser.maxFrameSize }
    /// The message being assembled from fragments, and what it has cost so far.
    private var fragments: (buffer: ByteBuffer, isText: Bool, compressed: Bool, cost: Int)?
    /// Set after a close or a failure: nothing more is read as frames.
    private(set) var isEnded = false

    init(maxMessageBytes: Int, acceptsCompressedMessages: Bool) {
        self.parser = InboundFrameParser(maxFrameSize: maxMessageBytes, acceptsCompressedMessages: acceptsCompressedMessages)
    }

    /// Adds bytes read from the socket (ignored once the input ended).
    mutating func append(_ bytes: ByteBuffer) {
        guard !isEnded else { return }
        parser.append(bytes)
    }

    /// The next event the bytes so far hold, or nil until more arrive.
    mutating func next() -> Event? {
        guard !isEnded else { return nil }
        while true {
            let frame: InboundFrame
            do {
                guard let parsed = try parser.next() else { return nil }
                frame = parsed
            } catch {
                switch error {
                case .tooLarge: return fail(.messageTooBig, "frame larger than \(maxMessageBytes) bytes")
                case .protocolViolation(let reason): return fail(.protocolError, reason)
                }
            }
            // RFC 6455 §5.1: a server must close the connection on an unmasked client frame.
            guard frame.isMasked else { return fail(.protocolError, "client frames must be masked") }
            if let event = handle(frame) { return event }
        }
    }

    private mutating func handle(_ frame: InboundFrame) -> Event? {
        switch frame.opcode {
        case InboundFrame.text, InboundFrame.binary:
            guard fragments == nil else { return fail(.protocolError, "new message before the last fragment") }
            let isText = frame.opcode == InboundFrame.text
            if frame.fin { return .message(frame.payload, isText: isText, compressed: frame.isCompressed) }
            fragments = (frame.payload, isText, frame.isCompressed, frame.payload.readableBytes + Self.frameOverhead)
            return nil
        case InboundFrame.continuation:
            guard var message = fragments else { return fail(.protocolError, "continuation frame without a message") }
            fragments = nil
            message.cost += frame.payload.readableBytes + Self.frameOverhead
            guard message.cost <= maxMessageBytes + Self.frameOverhead else {
                return fail(.messageTooBig, "message larger than \(maxMessageBytes) bytes")
            }
            var payload = frame.payload
            message.buffer.writeBuffer(&payload)
            guard frame.fin else {
                fragments = message
                return nil
            }
            return .message(message.buffer, isText: message.isText, compressed: message.compressed)
        case InboundFrame.ping:
            return .ping(payload: frame.payload)
        case InboundFrame.pong:
            return .pong
        case InboundFrame.close:
            isEnded = true
            return .close(reply: Self.closeReply(to: frame.payload))
        default:
            return fail(.protocolError, "unknown opcode")
        }
    }

    private mutating func fail(_ code: CloseCode, _ reason: String) -> Event {
        isEnded = true
        fragments = nil
        parser.reset()
        return .fail(code, reason: reason)
    }

    /// The code that answers a client's close frame: its own when it may appear on the wire, 1000 for an empty
    /// one, 1002 otherwise (RFC 6455 §5.5.1, §7.4.1: 1005, 1006 and 1015 are never sent; codes below 1000,
    /// unassigned ones and a one-byte body are protocol errors), 1007 for a reason that is not UTF-8 (§8.1).
    static func closeReply(to payload: ByteBuffer) -> UInt16 {
        var body = payload
        guard body.readableBytes > 0 else { return CloseCode.normal.rawValue }
        guard let code = body.readInteger(as: UInt16.self) else { return CloseCode.protocolError.rawValue }
        guard mayAppearOnTheWire(code) else { return CloseCode.protocolError.rawValue }
        guard String(validating: body.readableBytesView, as: UTF8.self) != nil else { return 1007 }
        return code
    }

    /// RFC 6455 §7.4.1 and IANA's registry: 1000-1003, 1007-1014 and the 3000-4999 ranges for applications.
    static func mayAppearOnTheWire(_ code: UInt16) -> Bool {
        switch code {
        case 1000...1003, 1007...1014, 3000...4999: true
        default: false
        }
    }
}
