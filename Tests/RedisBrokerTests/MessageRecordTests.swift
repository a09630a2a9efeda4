import NIOCore
import SwitchboardCore
import Testing

@testable import RedisBroker

/// The cluster's record of a message in Redis: its fields, no client codec's bytes (issue 35).
@Suite struct MessageRecordTests {
    @Test func aRecordGivesBackEveryFieldWithTheSeqRedisGave() throws {
        let publication = Publication(channel: "user:a\nb", event: "we\"ird\n,\"event\":", data: #"{"text":"line\nbreak","seq":"x"}"#)
        let record = MessageRecord.encode(publication, timestampMs: 1_700_000_000_123, global: false)
        let message = try #require(MessageRecord.decode(record, seq: 42))
        #expect(message == Message(publication, seq: 42, timestampMs: 1_700_000_000_123))
        let global = try #require(MessageRecord.decode(MessageRecord.encode(publication, timestampMs: 5, global: true), seq: 3))
        #expect(global.channel == nil && global.event == publication.event && global.seq == 3)
        #expect(String(buffer: global.nativeText).hasPrefix(#"{"type":"message","channel":null,"#))
    }

    @Test func whatIsNotARecordIsRefused() {
        let refused = [
            "", "no newline", "1 2\nab", "x 1 1\nabc", "1 5 1\nab", "1 1 9\nabc", "1 1 1\nab",
            #"{"type":"message","channel":"c","event":"e","data":1,"seq":1,"ts":1}"#,  // the old native text
        ]
        for text in refused {
            #expect(MessageRecord.decode(ByteBuffer(string: text), seq: 1) == nil, "\(text)")
        }
    }
}
