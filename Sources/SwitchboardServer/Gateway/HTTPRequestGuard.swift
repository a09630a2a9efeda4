import NIOCore
import NIOHTTP1
import SwitchboardCore

/// SPEC §13's bounds on one HTTP connection, around NIO's request decoder (which bounds none of them):
///
/// - **Head size**: a request head larger than ``Limits/maxHeadBytes`` is answered `431` and the connection
///   closed. The decoder emits nothing while a head accumulates, so the bytes read since the decoder last
///   emitted a part are (within one read) the size of the head in progress.
/// - **Time**: each request's head and body must arrive within `request-timeout-ms` of the connection being
///   ready for it (its start, or the previous response's end); a connection that trickles is closed.
/// - **Pipelining**: at most ``Limits/maxUnansweredRequests`` requests may wait for their responses; a client
///   that pipelines more without reading is closed. The decoder turns each read into as many request parts
///   as it holds, past the async channel's back-pressure, so this is what bounds the parts held per connection.
///
/// Two handlers share one state, on the connection's event loop: ``bytes`` goes before the decoder, ``parts``
/// after the upgrade handler (which holds the first request's parts until it decides). Both leave the pipeline
/// when the connection upgrades.
final class HTTPRequestGuard: Sendable {
    struct Limits: Sendable {
        /// Largest request head (request line and headers).
        static let maxHeadBytes = 16 * 1024
        /// Most requests a connection may have waiting for their responses.
        static let maxUnansweredRequests = 16

        var requestTimeout: TimeAmount
    }

    private struct State {
        /// Bytes read since the decoder last emitted a part.
        var bytesSincePart = 0
        /// Requests whose heads arrived and whose responses have not ended.
        var unanswered = 0
        /// Whether a request's `end` has not arrived yet.
        var receiving = true
        var deadline: Scheduled<Void>?
        var isClosing = false
    }

    private let limits: Limits
    private let state: NIOLoopBoundBox<State>
    private let audit: AuditLog
    private let ip: String

    init(limits: Limits, eventLoop: any EventLoop, audit: AuditLog, ip: String) {
        self.limits = limits
        self.state = NIOLoopBoundBox(State(), eventLoop: eventLoop)
        self.audit = audit
        self.ip = ip
    }

    /// The handler before the decoder.
    var bytes: Bytes { Bytes(guard: self) }
    /// The handler after the decoder and the upgrade handler.
    var parts: Parts { Parts(guard: self) }

    /// Counts raw bytes; answers `431` when a head outgrows its bound.
    final class Bytes: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        typealias InboundOut = ByteBuffer
        typealias OutboundOut = ByteBuffer
        private let owner: HTTPRequestGuard

        fileprivate init(guard owner: HTTPRequestGuard) { self.owner = owner }

        func handlerAdded(context: ChannelHandlerContext) {
            owner.arm(context)
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard !owner.state.value.isClosing else { return }
            owner.state.value.bytesSincePart += unwrapInboundIn(data).readableBytes
            context.fireChannelRead(data)
            guard owner.state.value.bytesSincePart > Limits.maxHeadBytes, !owner.state.value.isClosing else { return }
            owner.refuse(context, status: "431 Request Header Fields Too Large", detail: "request head over \(Limits.maxHeadBytes) bytes")
        }

        func handlerRemoved(context: ChannelHandlerContext) {
            owner.state.value.deadline?.cancel()
        }
    }

    /// Watches decoded requests and written responses.
    final class Parts: ChannelDuplexHandler, RemovableChannelHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias InboundOut = HTTPServerRequestPart
        typealias OutboundIn = HTTPServerResponsePart
        typealias OutboundOut = HTTPServerResponsePart
        private let owner: HTTPRequestGuard

        fileprivate init(guard owner: HTTPRequestGuard) { self.owner = owner }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard !owner.state.value.isClosing else { return }
            owner.state.value.bytesSincePart = 0
            switch unwrapInboundIn(data) {
            case .head:
                owner.state.value.unanswered += 1
                owner.state.value.receiving = true
                guard owner.state.value.unanswered <= Limits.maxUnansweredRequests else {
                    owner.refuse(
                        context, status: nil,
                        detail: "over \(Limits.maxUnansweredRequests) pipelined requests waiting for their responses")
                    return
                }
            case .body:
                break
            case .end:
                owner.state.value.receiving = false
                owner.state.value.deadline?.cancel()
                owner.state.value.deadline = nil
            }
            context.fireChannelRead(data)
        }

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            if case .end = unwrapOutboundIn(data) {
                owner.state.value.unanswered = max(owner.state.value.unanswered - 1, 0)
                // Ready for the next request: its time starts now (a pipelined one's included).
                if owner.state.value.unanswered == 0 || owner.state.value.receiving { owner.arm(context) }
            }
            context.write(data, promise: promise)
        }
    }

    /// Starts (again) the time the next request has to arrive whole.
    private func arm(_ context: ChannelHandlerContext) {
        state.value.deadline?.cancel()
        let channel = context.channel
        state.value.deadline = context.eventLoop.scheduleTask(in: limits.requestTimeout) { [self] in
            guard !state.value.isClosing else { return }
            state.value.isClosing = true
            audit.record(SecurityEvent(.requestTimeout, ip: ip, detail: "HTTP request not complete within request-timeout-ms"))
            channel.close(promise: nil)
        }
    }

    /// Closes the connection, first answering `status` (a raw response: the decoder's state is past trusting).
    private func refuse(_ context: ChannelHandlerContext, status: String?, detail: String) {
        state.value.isClosing = true
        state.value.deadline?.cancel()
        audit.record(SecurityEvent(.httpLimit, ip: ip, detail: detail))
        guard let status else {
            context.close(promise: nil)
            return
        }
        let body = ErrorBody.encode(code: .badRequest, message: detail)
        var response = context.channel.allocator.buffer(capacity: 160 + body.readableBytes)
        response.writeString(
            "HTTP/1.1 \(status)\r\nContent-Type: application/json\r\nContent-Length: \(body.readableBytes)\r\nConnection: close\r\n\r\n")
        response.writeImmutableBuffer(body)
        let channel = context.channel
        context.writeAndFlush(NIOAny(response)).whenComplete { _ in channel.close(promise: nil) }
    }
}
