public import NIOCore

/// A message on its way out, encoded once and shared by every recipient.
public struct Delivery: Sendable {
    /// The message's `seq` on its channel; 0 for frames that are not channel messages.
    public let seq: UInt64
    /// The JSON text of the message.
    public let payload: ByteBuffer
    /// The complete WebSocket text frame carrying ``payload``.
    public let frame: ByteBuffer

    public init(seq: UInt64 = 0, payload: ByteBuffer) {
        self.seq = seq
        self.payload = payload
        self.frame = WebSocketWireFrame.frame(.text, payload: payload)
    }
}

/// A connection as the hub sees it: something that takes deliveries without blocking.
public protocol Subscriber: AnyObject, Sendable {
    /// Queues `delivery` for writing. Called with channel locks held: must not block or call back into the hub.
    func deliver(_ delivery: Delivery)
}
