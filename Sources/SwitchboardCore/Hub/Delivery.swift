public import NIOCore

/// A frame on its way out, encoded once and shared by every recipient.
public struct Delivery: Sendable {
    /// The message's `seq` on its channel; 0 for frames that are not channel messages.
    public let seq: UInt64
    /// The JSON text.
    public let payload: ByteBuffer
    /// The complete WebSocket text frame carrying ``payload``.
    public let frame: ByteBuffer
    /// Whether this is a `message` delivery (which `?batch=true` connections receive inside `batch` frames).
    public let isMessage: Bool
    /// For conflated namespaces, `channel` and `key`: a slow consumer's queued message with the same
    /// conflation key may be replaced by this newer one (SPEC §5).
    public let conflationKey: String?

    /// A reply or another non-message frame.
    public init(payload: ByteBuffer) {
        self.init(seq: 0, payload: payload, isMessage: false, conflationKey: nil)
    }

    init(seq: UInt64, payload: ByteBuffer, isMessage: Bool, conflationKey: String?) {
        self.seq = seq
        self.payload = payload
        self.frame = WebSocketWireFrame.frame(.text, payload: payload)
        self.isMessage = isMessage
        self.conflationKey = conflationKey
    }

    /// A `message` delivery.
    public static func message(seq: UInt64, payload: ByteBuffer, conflationKey: String?) -> Delivery {
        Delivery(seq: seq, payload: payload, isMessage: true, conflationKey: conflationKey)
    }
}

/// A connection as the hub sees it: something that takes deliveries without blocking.
public protocol Subscriber: AnyObject, Sendable {
    /// Queues `delivery` for writing. Called with channel locks held: must not block or call back into the hub.
    func deliver(_ delivery: Delivery)
}
