public import NIOCore

/// `{"type":"batch","messages":[...]}` frames for `?batch=true` connections (SPEC §3, §5).
public enum BatchFrame {
    private static let prefix: StaticString = "{\"type\":\"batch\",\"messages\":["
    private static let suffix: StaticString = "]}"

    /// One text frame carrying `deliveries`' payloads, in order. The payloads are copied once, straight into
    /// the frame; they were encoded once per publish, so no JSON is produced here.
    public static func frame(of deliveries: ArraySlice<Delivery>) -> ByteBuffer {
        var length = prefix.utf8CodeUnitCount + suffix.utf8CodeUnitCount + max(0, deliveries.count - 1)
        for delivery in deliveries { length += delivery.payload.readableBytes }
        var frame = ByteBuffer()
        frame.reserveCapacity(length + 10)
        WebSocketWireFrame.writeHeader(opcode: .text, length: length, into: &frame)
        frame.writeStaticString(prefix)
        var first = true
        for delivery in deliveries {
            if !first { frame.writeInteger(UInt8(ascii: ",")) }
            first = false
            frame.writeImmutableBuffer(delivery.payload)
        }
        frame.writeStaticString(suffix)
        return frame
    }

    /// One text frame carrying `deliveries`' payloads, in order.
    public static func frame(of deliveries: [Delivery]) -> ByteBuffer {
        frame(of: deliveries[...])
    }
}

/// The last batch frame built, kept for the next connection drained with the same messages.
///
/// The subscribers of a channel drained in one pass usually hold exactly the same messages, so the frame
/// is built once per pass and its bytes shared, like a single publish's frame. Messages are compared by
/// identity: the same deliveries in the same order always make the same frame.
public struct BatchFrameCache {
    private var messages: [Delivery] = []
    private var frame = ByteBuffer()

    public init() {}

    /// The batch frame of `deliveries`, built only when it differs from the last one asked for.
    public mutating func frame(of deliveries: ArraySlice<Delivery>) -> ByteBuffer {
        if deliveries.count != messages.count || !zip(deliveries, messages).allSatisfy({ $0 === $1 }) {
            messages = Array(deliveries)
            frame = BatchFrame.frame(of: deliveries)
        }
        return frame
    }
}
