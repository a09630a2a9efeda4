public import NIOCore
public import SwitchboardCore

/// How a cluster keeps a message in Redis and sends it on the feed: its fields with their lengths, no wire format of
/// any client codec. `<ts> <channel bytes, or - for a global message> <event bytes>\n<channel><event><data>`.
///
/// The `seq` is not in it: Redis gives it (the entry id in the history stream, the head of a feed message), so a
/// node encodes the record before it knows the `seq`, once for the whole cluster, and every node builds the
/// ``Message`` back from its fields.
public enum MessageRecord {
    /// The record of `publication` published at `timestampMs` (`global`: to every connection, channel `null`).
    public static func encode(_ publication: Publication, timestampMs: Int64, global: Bool) -> ByteBuffer {
        var record = ByteBuffer()
        record.reserveCapacity(32 + publication.channel.utf8.count + publication.event.utf8.count + publication.data.utf8.count)
        record.writeDecimal(timestampMs)
        record.writeStaticString(" ")
        if global { record.writeStaticString("-") } else { record.writeDecimal(publication.channel.utf8.count) }
        record.writeStaticString(" ")
        record.writeDecimal(publication.event.utf8.count)
        record.writeStaticString("\n")
        if !global { record.writeString(publication.channel) }
        record.writeString(publication.event)
        record.writeString(publication.data)
        return record
    }

    /// The message a record holds, numbered `seq`; nil when `record` is not one (another version's, or corrupt).
    public static func decode(_ record: ByteBuffer, seq: UInt64) -> Message? {
        var record = record
        let bytes = record.readableBytesView
        guard let newline = bytes.firstIndex(of: UInt8(ascii: "\n")), newline - bytes.startIndex <= 64,
            let header = record.readString(length: newline - bytes.startIndex)
        else { return nil }
        record.moveReaderIndex(forwardBy: 1)
        let fields = header.split(separator: " ", omittingEmptySubsequences: false)
        guard fields.count == 3, let timestampMs = Int64(fields[0]), let eventBytes = Int(fields[2]), eventBytes >= 0 else { return nil }
        let channel: String?
        if fields[1] == "-" {
            channel = nil
        } else {
            guard let channelBytes = Int(fields[1]), channelBytes >= 0, let name = record.readString(length: channelBytes) else { return nil }
            channel = name
        }
        guard let event = record.readString(length: eventBytes), record.readableBytes > 0 else { return nil }
        return Message(channel: channel, event: event, data: record, seq: seq, timestampMs: timestampMs)
    }
}
