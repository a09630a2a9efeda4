public import NIOCore

/// A channel message as the hub keeps and hands it on: its fields, in no wire format. Each codec encodes it from
/// these fields once per publication and shares the result between its recipients (``Delivery/frame(_:encodedBy:)``):
/// the native codec (SPEC §3) as `{"type":"message",...}`, Socket.IO's (SPEC §9) as an event packet, a cluster's
/// broker as its own record in Redis. The conflation key is the delivery's (``Delivery/conflationKey``) and the
/// stream epoch the channel's (a message does not carry it on any wire).
public struct Message: Sendable, Equatable {
    /// The channel; nil for a global message (`all: true`, sent as `channel: null`).
    public var channel: String?
    public var event: String
    /// The `data` field as JSON text, validated when it was published.
    public var data: ByteBuffer
    /// Its place in the channel's stream (in the global sequence for a global message).
    public var seq: UInt64
    /// When it was published, in Unix milliseconds.
    public var timestampMs: Int64

    public init(channel: String?, event: String, data: ByteBuffer, seq: UInt64, timestampMs: Int64) {
        self.channel = channel
        self.event = event
        self.data = data
        self.seq = seq
        self.timestampMs = timestampMs
    }

    /// `publication` as the message numbered `seq` of its channel (`global`: of every connection).
    public init(_ publication: Publication, seq: UInt64, timestampMs: Int64, global: Bool = false) {
        self.init(
            channel: global ? nil : publication.channel, event: publication.event, data: ByteBuffer(string: publication.data), seq: seq,
            timestampMs: timestampMs)
    }
}
