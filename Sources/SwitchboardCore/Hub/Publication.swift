public import NIOCore

/// A message to publish on one channel: `event` and already-validated JSON `data`.
public struct Publication: Sendable, Equatable {
    public var channel: String
    public var event: String
    /// The `data` field as JSON text, already validated by the caller.
    public var data: String
    /// Conflation key (SPEC §5): on throttled namespaces only the latest message per key survives a window.
    public var key: String?

    public init(channel: String, event: String, data: String, key: String? = nil) {
        self.channel = channel
        self.event = event
        self.data = data
        self.key = key
    }

    /// `{"type":"message","channel":...,"event":...,"data":...,"seq":N,"ts":N}` (SPEC §3);
    /// `channel` is `null` for a global message (`all: true`).
    func encode(seq: UInt64, timestampMs: Int64, global: Bool = false) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(64 + channel.utf8.count + event.utf8.count + data.utf8.count)
        writeHead(into: &buffer, global: global)
        buffer.writeDecimal(seq)
        writeTail(into: &buffer, timestampMs: timestampMs)
        return buffer
    }

    /// The message's JSON cut around its `seq`, for a broker that learns the `seq` elsewhere (in Redis):
    /// `head` + the decimal seq + `tail` is exactly ``encode(seq:timestampMs:global:)``'s text.
    public func encodedAroundSeq(timestampMs: Int64, global: Bool = false) -> (head: ByteBuffer, tail: ByteBuffer) {
        var head = ByteBuffer()
        head.reserveCapacity(48 + channel.utf8.count + event.utf8.count + data.utf8.count)
        writeHead(into: &head, global: global)
        var tail = ByteBuffer()
        writeTail(into: &tail, timestampMs: timestampMs)
        return (head, tail)
    }

    private func writeHead(into buffer: inout ByteBuffer, global: Bool) {
        buffer.writeStaticString("{\"type\":\"message\",\"channel\":")
        if global { buffer.writeStaticString("null") } else { buffer.writeJSONString(channel) }
        buffer.writeStaticString(",\"event\":")
        buffer.writeJSONString(event)
        buffer.writeStaticString(",\"data\":")
        buffer.writeString(data)
        buffer.writeStaticString(",\"seq\":")
    }

    private func writeTail(into buffer: inout ByteBuffer, timestampMs: Int64) {
        buffer.writeStaticString(",\"ts\":")
        buffer.writeDecimal(timestampMs)
        buffer.writeStaticString("}")
    }
}

extension Publication {
    /// Why `event` cannot be published, or nil: Socket.IO clients drop the connection on an event named like
    /// one of their own (SPEC §9), so those names are refused on every path, whatever the subscriber's protocol.
    public static func refusal(ofEvent event: String) -> String? {
        SocketPacket.reservedEventNames.contains(event) ? "'\(event)' is reserved by Socket.IO clients; use another event name" : nil
    }
}
