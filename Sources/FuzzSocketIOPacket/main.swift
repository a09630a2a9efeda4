import NIOCore
import SwitchboardCore

/// One fuzz input: a WebSocket text frame or a long-polling body on `/socket.io/`, as the Engine.IO and
/// Socket.IO decoders get them. Besides "never crashes", it checks their promises:
/// - a polling body's packets re-encode to a body that decodes to the same packets;
/// - a Socket.IO packet re-encodes to text that decodes to the same packet;
/// - every refusal is the decoder's own error with a reason (typed throws makes the type static);
/// - the Engine.IO and Socket.IO session state machines take the input without trapping.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSocketIOPacket(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: start, count: count)
    do {
        let packets = try EnginePayload.decode(bytes, maxBytes: 1_000_000)
        var body = ByteBuffer()
        EnginePayload.encode(packets, into: &body)
        guard let again = try? EnginePayload.decode(body.readableBytesView, maxBytes: 1_000_000), again == packets else {
            fatalError("a polling body did not survive re-encoding")
        }
        for packet in packets where packet.kind == .message && !packet.isBinary {
            check(socketPacket: packet.data)
        }
    } catch {
        guard !error.description.isEmpty else { fatalError("an Engine.IO refusal without a reason") }
    }
    check(socketPacket: Array(bytes))
    checkSessions(with: Array(bytes))
    return 0
}

/// The session state machines take any input without trapping: a POSTed body on a polling session, and
/// the same bytes as a CONNECT's and then an event's data on a Socket.IO session.
private func checkSessions(with bytes: [UInt8]) {
    var engine = EngineSession(sid: "fuzz", transport: .polling, configuration: .init(maxPayload: 1_000_000), now: 0)
    _ = engine.poll()
    _ = engine.posted(bytes)
    _ = engine.tick(now: 60_000)
    var session = SocketIOSession(now: 0)
    _ = session.received(Array("0".utf8))
    _ = session.accepted(sid: "fuzz")
    _ = session.received(bytes)
}

private func check(socketPacket bytes: [UInt8]) {
    do {
        let packet = try SocketPacket.decode(bytes)
        var text = ByteBuffer()
        packet.write(into: &text)
        guard let again = try? SocketPacket.decode(text.readableBytesView), again == packet else {
            fatalError("a Socket.IO packet did not survive re-encoding: \(String(buffer: text))")
        }
    } catch {
        guard !error.description.isEmpty else { fatalError("a Socket.IO refusal without a reason") }
    }
}
