public import NIOCore
import Synchronization

/// A frame on its way out, encoded once and shared by every recipient.
///
/// A class, not a struct: a publish puts the same delivery in every subscriber's queue, and a reference
/// costs one retain per queue where a struct of buffers and strings would cost five (seen in a profile).
public final class Delivery: Sendable {
    /// A channel message's fields, from which each codec encodes it (``Message``); nil for a reply, which its
    /// connection's codec encoded already.
    public let message: Message?
    /// The native text: a message's native encoding (SPEC §3, made when the delivery is, once per publication:
    /// native recipients read it without a lock), or a reply's text in its connection's codec.
    public let payload: ByteBuffer
    /// The complete WebSocket text frame carrying ``payload``.
    public let frame: ByteBuffer
    /// For conflated namespaces, `channel` and `key`: a slow consumer's queued message with the same
    /// conflation key may be replaced by this newer one (SPEC §5).
    public let conflationKey: String?
    /// The namespace of a message, for per-namespace counters; nil for replies and global messages.
    public let namespace: String?
    /// When the publish was accepted, in `NIODeadline` uptime nanoseconds (for the delivery latency histogram).
    public let publishedAt: UInt64
    /// This message's frame in the other encodings, each built by its first recipient that needs it and shared
    /// by the rest (SPEC §9, §12: one encoding per publication and codec in use, none for one not in use).
    private let encodings = Mutex<Encodings>(Encodings())

    /// A frame of a delivery other than its native uncompressed ``frame``.
    public enum Encoding: Sendable {
        /// The Socket.IO codec's WebSocket frame (SPEC §9).
        case socketIO
        /// The native frame compressed with permessage-deflate (SPEC §12).
        case deflated
        /// The Socket.IO frame compressed with permessage-deflate.
        case socketIODeflated
    }

    private struct Encodings {
        var socketIO: ByteBuffer?
        var deflated: ByteBuffer?
        var socketIODeflated: ByteBuffer?

        subscript(encoding: Encoding) -> ByteBuffer? {
            get {
                switch encoding {
                case .socketIO: socketIO
                case .deflated: deflated
                case .socketIODeflated: socketIODeflated
                }
            }
            set {
                switch encoding {
                case .socketIO: socketIO = newValue
                case .deflated: deflated = newValue
                case .socketIODeflated: socketIODeflated = newValue
                }
            }
        }
    }

    /// A reply or another non-message frame.
    public convenience init(payload: ByteBuffer) {
        self.init(message: nil, payload: payload, conflationKey: nil, namespace: nil)
    }

    private init(message: Message?, payload: ByteBuffer, conflationKey: String?, namespace: String?) {
        self.message = message
        self.payload = payload
        self.frame = WebSocketWireFrame.frame(.text, payload: payload)
        self.conflationKey = conflationKey
        self.namespace = namespace
        self.publishedAt = NIODeadline.now().uptimeNanoseconds
    }

    /// The message's `seq` on its channel; 0 for frames that are not channel messages.
    public var seq: UInt64 { message?.seq ?? 0 }

    /// Whether this is a `message` delivery (which `?batch=true` connections receive inside `batch` frames).
    public var isMessage: Bool { message != nil }

    /// The frame of this delivery in `encoding`: `encode` runs for the first caller only, every later one gets
    /// the same buffer (same storage). Cheap to call from any thread; `encode` must not ask this delivery for
    /// another encoding (it runs under the cache's lock).
    public func frame(_ encoding: Encoding, encodedBy encode: (Delivery) -> ByteBuffer) -> ByteBuffer {
        encodings.withLock { cached in
            if let frame = cached[encoding] { return frame }
            let frame = encode(self)
            cached[encoding] = frame
            return frame
        }
    }

    /// A channel message's delivery.
    public static func message(_ message: Message, conflationKey: String?, namespace: String? = nil) -> Delivery {
        Delivery(message: message, payload: message.nativeText, conflationKey: conflationKey, namespace: namespace)
    }
}

/// A connection as the hub sees it: something that takes deliveries without blocking.
public protocol Subscriber: AnyObject, Sendable {
    /// Queues `delivery` for writing. Called with channel locks held: must not block or call back into the hub.
    func deliver(_ delivery: Delivery)
    /// The lanes this subscriber is reached through (see ``FanoutLane``); nil to receive every message
    /// through ``deliver(_:)``. Read when it subscribes.
    var fanout: FanoutMembership? { get }
}

extension Subscriber {
    public var fanout: FanoutMembership? { nil }
}
