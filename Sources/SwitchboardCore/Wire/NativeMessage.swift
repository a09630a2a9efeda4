public import NIOCore

extension Message {
    /// The native codec's text of the message (SPEC §3):
    /// `{"type":"message","channel":...,"event":...,"data":...,"seq":N,"ts":N}`, `channel` `null` for a global one.
    public var nativeText: ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(72 + (channel?.utf8.count ?? 4) + event.utf8.count + data.readableBytes)
        buffer.writeStaticString("{\"type\":\"message\",\"channel\":")
        if let channel { buffer.writeJSONString(channel) } else { buffer.writeStaticString("null") }
        buffer.writeStaticString(",\"event\":")
        buffer.writeJSONString(event)
        buffer.writeStaticString(",\"data\":")
        buffer.writeImmutableBuffer(data)
        buffer.writeStaticString(",\"seq\":")
        buffer.writeDecimal(seq)
        buffer.writeStaticString(",\"ts\":")
        buffer.writeDecimal(timestampMs)
        buffer.writeStaticString("}")
        return buffer
    }
}
