public import NIOCore

/// `{"type":"batch","messages":[...]}` frames for `?batch=true` connections (SPEC §3, §5).
public enum BatchFrame {
    /// One text frame carrying `deliveries`' payloads, in order. The payloads are copied once into the frame;
    /// they were encoded once per publish, so no JSON is produced here.
    public static func frame(of deliveries: some Collection<Delivery>) -> ByteBuffer {
        let payloadBytes = deliveries.reduce(0) { $0 + $1.payload.readableBytes + 1 }
        var payload = ByteBuffer()
        payload.reserveCapacity(payloadBytes + 32)
        payload.writeStaticString("{\"type\":\"batch\",\"messages\":[")
        for (index, delivery) in deliveries.enumerated() {
            if index > 0 { payload.writeStaticString(",") }
            payload.writeImmutableBuffer(delivery.payload)
        }
        payload.writeStaticString("]}")
        return WebSocketWireFrame.frame(.text, payload: payload)
    }
}
