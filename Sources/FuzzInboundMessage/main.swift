import NIOCore
import SwitchboardCore

/// One fuzz input: the payload of a client text frame, exactly as `WebSocketConnection` hands it to the
/// decoder. Besides "never crashes", it checks the decoder's promises:
/// - whatever decodes as JSON re-encodes to text that parses back to the same value;
/// - a `publish` keeps its `data` as JSON text that parses back to the value it came from;
/// - a decoding failure is always a `ClientRequestError` (typed throws makes that static) with a message.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzInboundMessage(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: start, count: count)
    // The connection refuses non-UTF-8 text frames before decoding; the decoder still must not crash on them.
    do {
        let request = try ClientRequest.decode(bytes)
        if case .publish(_, _, let data, _) = request.command {
            guard let reparsed = try? JSONValue.parse(Array(data.utf8)), reparsed.jsonText == data else {
                fatalError("publish data is not stable JSON text: \(data)")
            }
        }
        if case .subscribe(let channel, _, _) = request.command {
            _ = ChannelName(channel)
        }
    } catch {
        guard !error.message.isEmpty else { fatalError("decoding error without a message") }
    }
    if let value = try? JSONValue.parse(bytes) {
        guard let again = try? JSONValue.parse(Array(value.jsonText.utf8)), again == value else {
            fatalError("JSON round trip changed the value: \(value.jsonText)")
        }
    }
    checkFraming(bytes)
    return 0
}

/// The same bytes as a client's raw stream: the frame parser must not crash, must give the same frames however
/// the stream is split, and must never hand out a payload above its limit.
func checkFraming(_ bytes: UnsafeBufferPointer<UInt8>) {
    func frames(splitAt split: Int) -> ([[UInt8]], InboundFrameParser.Failure?) {
        var parser = InboundFrameParser(maxFrameSize: 1024)
        var result: [[UInt8]] = []
        for chunk in [bytes[..<split], bytes[split...]] {
            parser.append(ByteBuffer(bytes: chunk))
            do {
                while let frame = try parser.next() {
                    guard frame.payload.readableBytes <= 1024 else { fatalError("payload above the limit") }
                    result.append([frame.opcode] + Array(frame.payload.readableBytesView))
                }
            } catch {
                return (result, error)
            }
        }
        return (result, nil)
    }
    let whole = frames(splitAt: bytes.count)
    let split = frames(splitAt: bytes.count / 2)
    guard whole.0 == split.0, whole.1 == split.1 else { fatalError("framing depends on how the stream is split") }
}
