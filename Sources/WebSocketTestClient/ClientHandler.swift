import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Reads an HTTP response head (and, when not upgraded, its body), then WebSocket frames.
///
/// Confined to its channel's event loop.
final class ClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum Phase {
        case head
        case body(status: Int, headers: [(String, String)], expected: Int?)
        case frames
    }

    private var phase = Phase.head
    private var buffer = ByteBuffer()
    private let response: EventLoopPromise<HTTPTestResponse>
    private let frames: Mailbox<ServerFrame>
    private let answerPings: Bool
    private let end: EventLoopPromise<StreamEnd>
    private var closeEchoed = false

    init(
        response: EventLoopPromise<HTTPTestResponse>, frames: Mailbox<ServerFrame>, end: EventLoopPromise<StreamEnd>,
        answerPings: Bool
    ) {
        self.response = response
        self.frames = frames
        self.end = end
        self.answerPings = answerPings
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        buffer.writeBuffer(&incoming)
        process(context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .body(let status, let headers, _) = phase {
            response.succeed(HTTPTestResponse(status: status, headers: headers, body: String(buffer: buffer)))
        }
        response.fail(WebSocketTestClientError.closed)
        frames.finish()
        end.succeed(.finished)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? IOError, error.errnoCode == ECONNRESET { end.succeed(.reset) }
        context.close(promise: nil)
    }

    private func process(context: ChannelHandlerContext) {
        while true {
            switch phase {
            case .head:
                guard let head = try? WireParser.responseHead(buffer) else { return }
                buffer.moveReaderIndex(forwardBy: head.length)
                if head.status == 101 {
                    phase = .frames
                    response.succeed(HTTPTestResponse(status: 101, headers: head.headers, body: ""))
                } else {
                    let length = head.headers.first { $0.0.lowercased() == "content-length" }.flatMap { Int($0.1) }
                    phase = .body(status: head.status, headers: head.headers, expected: length)
                }
            case .body(let status, let headers, let expected):
                guard let expected, buffer.readableBytes >= expected else { return }
                let body = buffer.readString(length: expected) ?? ""
                response.succeed(HTTPTestResponse(status: status, headers: headers, body: body))
                phase = .head
                return
            case .frames:
                guard let frame = WireParser.frame(&buffer) else {
                    buffer.discardReadBytes()
                    return
                }
                if frame.opcode == 0x9 && answerPings {
                    context.writeAndFlush(wrapOutboundOut(WireParser.clientFrame(opcode: 0xA, payload: frame.payload)), promise: nil)
                }
                // Echo a close frame as browsers do (RFC 6455 §5.5.1), so the server can close at once.
                if frame.opcode == 0x8 && !closeEchoed {
                    closeEchoed = true
                    context.writeAndFlush(wrapOutboundOut(WireParser.clientFrame(opcode: 0x8, payload: Array(frame.payload.prefix(2)))), promise: nil)
                }
                frames.put(frame)
            }
        }
    }
}

/// How the server ended a test connection's TCP stream.
public enum StreamEnd: Sendable, Equatable {
    /// An orderly end (FIN).
    case finished
    /// A reset (RST): bytes in flight, such as a close frame, may have been lost.
    case reset
}
