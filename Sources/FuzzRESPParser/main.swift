import NIOCore
import RedisBroker
import RedisClient

/// One fuzz input: bytes as a Redis server might send them. Besides "never crashes", it checks the parser's
/// promises: the same values (or the same failure) however the stream is split, and every value, written back
/// as RESP, parses to itself.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRESPParser(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: start, count: count))
    let limits = RESPParser.Limits(maxBulkBytes: 4096, maxArrayCount: 256, maxDepth: 8, maxLineBytes: 256)
    let whole = parse([bytes], limits: limits)
    for split in [1, count / 3, count / 2, count - 1] where split > 0 && split < count {
        let pieces = parse([Array(bytes[..<split]), Array(bytes[split...])], limits: limits)
        guard pieces.values == whole.values, pieces.failed == whole.failed else {
            fatalError("parsing depends on how the stream is split (at \(split))")
        }
    }
    // The same bytes as a pub/sub payload: a feed message or a control message must parse or be refused.
    let payload = ByteBuffer(bytes: bytes)
    if let feed = PublishScript.parseFeedMessage(payload), feed.seq == 0 || feed.epoch.isEmpty { fatalError("accepted \(feed)") }
    if case .reply(_, _, let closed)? = ClusterControl.decode(payload), closed < 0 { fatalError("negative reply") }
    for value in whole.values {
        var encoded = ByteBuffer()
        encoded.writeRESPValue(value)
        let again = parse([Array(encoded.readableBytesView)], limits: .init())
        guard again.values == [value], !again.failed else { fatalError("round trip changed \(value)") }
    }
    return 0
}

private func parse(_ pieces: [[UInt8]], limits: RESPParser.Limits) -> (values: [RESPValue], failed: Bool) {
    var parser = RESPParser(limits: limits)
    var values: [RESPValue] = []
    for piece in pieces {
        parser.append(ByteBuffer(bytes: piece))
        do {
            while let value = try parser.next() { values.append(value) }
        } catch {
            return (values, true)
        }
    }
    return (values, false)
}
