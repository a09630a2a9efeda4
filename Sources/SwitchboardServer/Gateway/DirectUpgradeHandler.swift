import HTTPTypes
import NIOCore
import NIOHTTP1

/// The first handler of a connection (after TLS): answers a plain `/ws` upgrade (``DirectUpgradeRequest``)
/// itself and hands every other connection, with the bytes read so far, to NIO's HTTP/1 pipeline.
///
/// Why by hand: a reconnect storm is mostly upgrades, and for a connection that sends one request and then
/// speaks WebSocket, setting up and tearing down NIO's HTTP decoder, encoder and typed upgrade handler (with
/// its futures) was the largest share of the server's CPU per connection. The checks are the same
/// (``UpgradeAdmission``, SPEC §3), refusals the same status and JSON body, and anything unusual in the
/// request goes the standard way.
///
/// Event-loop confined.
final class DirectUpgradeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        /// Reading the request head; `searched` bytes of it hold no end of head.
        case reading(ByteBuffer, searched: Int)
        /// The head is in: admission runs; bytes the client sends meanwhile wait here for its connection.
        case admitting(ByteBuffer)
        /// Handed over (or refused): nothing more is done here.
        case done
    }

    /// Most bytes a client may send between its upgrade request and the answer.
    static let maxEarlyBytes = 65_536

    private var state = State.reading(ByteBuffer(), searched: 0)
    /// The server began shutting down during admission.
    private var quiesced = false
    private let negotiated: EventLoopPromise<GatewayChannel.Negotiated>
    private let admit: (HTTPRequestHead, any Channel) -> (UpgradeAdmission.Outcome, extensions: String?)
    private let install: (GatewayChannel.AcceptedUpgrade, any Channel) throws -> Void
    private let standardPipeline: (any Channel) throws -> EventLoopFuture<GatewayChannel.Negotiated>
    private let answered: () -> Void
    private let queue: UpgradeQueue

    /// - Parameters:
    ///   - negotiated: completed with how the connection's first request ended (as the HTTP pipeline's is).
    ///   - admit: SPEC §3's checks and the pools; the `Sec-WebSocket-Extensions` answer with it.
    ///   - install: puts the accepted connection's handler in the pipeline.
    ///   - standardPipeline: sets up NIO's HTTP/1 pipeline behind this handler.
    ///   - answered: counts an upgrade answered here.
    ///   - queue: the loop's line of upgrades, where a request waits for its turn once read.
    init(
        negotiated: EventLoopPromise<GatewayChannel.Negotiated>,
        queue: UpgradeQueue,
        admit: @escaping (HTTPRequestHead, any Channel) -> (UpgradeAdmission.Outcome, extensions: String?),
        install: @escaping (GatewayChannel.AcceptedUpgrade, any Channel) throws -> Void,
        standardPipeline: @escaping (any Channel) throws -> EventLoopFuture<GatewayChannel.Negotiated>,
        answered: @escaping () -> Void = {}
    ) {
        self.negotiated = negotiated
        self.queue = queue
        self.admit = admit
        self.install = install
        self.standardPipeline = standardPipeline
        self.answered = answered
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        switch state {
        case .reading(var head, let searched):
            state = .done
            head.writeBuffer(&bytes)
            switch DirectUpgradeRequest.parse(head.readableBytesView, searched: searched) {
            case .needsMore:
                state = .reading(head, searched: head.readableBytes)
            case .otherwise:
                handOver(head, context: context)
            case .upgrade(let request, let length):
                state = .admitting(head.getSlice(at: head.readerIndex + length, length: head.readableBytes - length) ?? ByteBuffer())
                queue.enqueue { [self] in upgrade(request, context: context) }
            }
        case .admitting(var early):
            state = .done
            early.writeBuffer(&bytes)
            guard early.readableBytes <= Self.maxEarlyBytes else {
                context.close(promise: nil)
                return
            }
            state = .admitting(early)
        case .done:
            context.fireChannelRead(data)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Before its answer (still reading, or waiting for admission or its turn): it ended at end of file.
        switch state {
        case .reading, .admitting: negotiated.fail(ChannelError.eof)
        case .done: break
        }
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Shutting down while a request is still coming in: there is nothing to finish (as for an idle HTTP
        // connection). An upgrade under admission is told once its connection is in place (close 1001).
        guard event is ChannelShouldQuiesceEvent else { return context.fireUserInboundEventTriggered(event) }
        switch state {
        case .reading: context.close(promise: nil)
        case .admitting: quiesced = true
        case .done: context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// Not a plain upgrade: NIO's HTTP pipeline takes the connection, starting with what was read.
    private func handOver(_ bytes: ByteBuffer, context: ChannelHandlerContext) {
        do {
            negotiated.completeWith(try standardPipeline(context.channel))
        } catch {
            negotiated.fail(error)
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(wrapInboundOut(bytes))
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    /// The request's turn in the loop's ``UpgradeQueue``: admission, then the `101` and the connection, or the refusal.
    private func upgrade(_ request: HTTPRequestHead, context: ChannelHandlerContext) {
        let channel = context.channel
        // Gone while it waited (or timed out: `request-timeout-ms`): nothing to admit.
        guard channel.isActive else {
            state = .done
            negotiated.fail(ChannelError.eof)
            return
        }
        let (outcome, extensions) = admit(request, channel)
        switch outcome {
        case .decided(let result):
            answer(request, with: result, extensions: extensions, context: context)
        case .pending(let admitted):
            admitted.hop(to: context.eventLoop).assumeIsolated().whenComplete { [self] result in
                answer(request, with: result.mapError(UpgradeRejection.init), extensions: extensions, context: context)
            }
        }
    }

    /// Admission's answer: the `101` and the connection, or the refusal (or nothing, for a client gone meanwhile).
    private func answer(
        _ request: HTTPRequestHead, with result: Result<AdmittedUpgrade, UpgradeRejection>, extensions: String?,
        context: ChannelHandlerContext
    ) {
        let channel = context.channel
        guard case .admitting(let early) = state, channel.isActive else {
            // The client left meanwhile: its slot goes back with the reservation.
            if case .success(let admitted) = result { admitted.reservation.release() }
            negotiated.fail(ChannelError.eof)
            return
        }
        state = .done
        answered()
        switch result {
        case .success(let admitted):
            do {
                // Admission checked the key; a handshake without one never gets here.
                guard let key = WebSocketHandshake.key(of: request) else { throw ChannelError.inappropriateOperationForState }
                // The connection writes the 101 in front of its first frame, `welcome`, which it queues at once:
                // one segment, written straight to the socket.
                let handshake = Self.switchingProtocols(key: key, extensions: extensions)
                try install(.native(admitted, compressed: extensions != nil, handshake: handshake), channel)
            } catch {
                negotiated.fail(error)
                context.close(promise: nil)
                return
            }
            if early.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(early)) }
            if quiesced { context.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            negotiated.succeed(.webSocket)
        case .failure(let rejection):
            context.writeAndFlush(wrapOutboundOut(Self.refusal(rejection))).whenComplete { _ in channel.close(promise: nil) }
            negotiated.succeed(.webSocket)
        }
    }

    /// The `101` answer (RFC 6455 §4.2.2).
    static func switchingProtocols(key: String, extensions: String?) -> ByteBuffer {
        var response = ByteBuffer()
        response.writeStaticString("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: ")
        response.writeString(WebSocketHandshake.accept(forKey: key))
        if let extensions {
            response.writeStaticString("\r\nsec-websocket-extensions: ")
            response.writeString(extensions)
        }
        response.writeStaticString("\r\n\r\n")
        return response
    }

    /// A refused upgrade: its status and `{"error":{"code","message"}}`, then the connection closes.
    static func refusal(_ rejection: UpgradeRejection) -> ByteBuffer {
        let body = ErrorBody.encode(code: rejection.code, message: rejection.message)
        let status = rejection.status
        var response = ByteBuffer()
        response.writeString(
            "HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\ncontent-type: application/json\r\ncontent-length: \(body.readableBytes)\r\nconnection: close\r\n\r\n")
        response.writeImmutableBuffer(body)
        return response
    }
}
