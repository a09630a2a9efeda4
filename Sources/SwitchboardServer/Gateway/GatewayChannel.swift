import HTTPTypes
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOSSL
import NIOWebSocket
import SwitchboardCore
import Synchronization

/// Switchboard's server child channel: HTTP/1.1 for the API and the WebSocket upgrade on one port.
///
/// Plain requests go to the Hummingbird responder. Upgrades run ``UpgradeAdmission`` first; a refusal is
/// answered with SPEC §3's status and JSON body (HummingbirdWebSocket would send a bare 400), and an
/// accepted upgrade is handed to a ``WebSocketConnection`` on NIO's frame decoder.
struct GatewayChannel: HTTPChannelHandler {
    /// How the upgrade negotiation of one connection ended.
    enum Negotiated: Sendable {
        /// The connection goes on as HTTP, served by a task of its own (``serve(_:logger:)``).
        case http(HTTPConnection)
        /// It became a WebSocket, which lives on in its channel's pipeline with no task: holding one until it
        /// closes would cost about 3 KiB each (graceful shutdown waits for them in `WebSocketDrain`).
        case webSocket
    }

    /// A connection whose first request was not an accepted upgrade.
    enum HTTPConnection: Sendable {
        /// A request for the router (including upgrades with a bad handshake, which it answers).
        case request(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        /// An upgrade refused by SPEC §3's checks, answered with its status and body.
        case refused(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, UpgradeRejection)
    }

    struct Value: ServerChildChannelValue {
        let negotiated: EventLoopFuture<Negotiated>
        let channel: any Channel
    }

    let node: Node
    let responder: HTTPChannelHandler.Responder

    /// What an accepted upgrade becomes: a native connection, a new Engine.IO session on WebSocket, or the
    /// WebSocket that takes over a polling session.
    enum AcceptedUpgrade: Sendable {
        /// `compressed`: permessage-deflate was negotiated (SPEC §12). `handshake`: the `101` answer, when the
        /// connection is to write it (nil when NIO's upgrader wrote it).
        case native(AdmittedUpgrade, compressed: Bool, handshake: ByteBuffer? = nil)
        case engineHandshake(SlotReservation, compressed: Bool, forwardedHeaders: [String: String])
        case engineUpgrade(EngineConnection, compressed: Bool)
    }

    /// - Parameter responder: the router's; Engine.IO's polling requests are answered before it (``EnginePolling``).
    init(node: Node, responder: @escaping HTTPChannelHandler.Responder) {
        self.node = node
        let polling = EnginePolling(node: node)
        self.responder = { request, writer, channel in
            if EnginePolling.handles(request.uri.path) {
                try await polling.respond(to: request, writer: writer, channel: channel)
            } else {
                try await responder(request, writer, channel)
            }
        }
    }

    /// Receive buffers start small: NIO keeps a connection's last receive buffer for reuse, and a subscriber
    /// sends little after its upgrade request (the buffer still grows for bigger reads).
    static let receiveBuffers = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65_536)

    /// The `Sec-WebSocket-Extensions` answer to a `/ws` or Engine.IO WebSocket upgrade: permessage-deflate when `compression` is on, the
    /// client offers it acceptably and the loop's compressor is running (SPEC §12); nil for plain frames.
    private func compressionResponse(to head: HTTPRequestHead, on loop: any EventLoop) -> String? {
        guard node.settings.compression, node.gateway.loops[loop].deflater != nil else { return nil }
        return PerMessageDeflate.response(toOffers: head.headers["Sec-WebSocket-Extensions"])
    }

    /// Sets a connection's pipeline up without direct writes (``ServerChildChannel``'s entry point).
    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        setup(channel: channel, socket: nil, logger: logger)
    }

    /// Sets a new connection's pipeline up. `socket` writes to its descriptor (nil under TLS).
    func setup(channel: any Channel, socket: SocketWriter?, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            try channel.syncOptions?.setOption(ChannelOptions.recvAllocator, value: Self.receiveBuffers)
            // An HTTP client may half-close once its request is sent and still read the answer (a WebSocket turns
            // this off, ``install(_:on:)``). Set here rather than as the bootstrap's child option, which NIO applies
            // through a chain of futures per connection (about 1 % of the server's CPU in a connect storm).
            try channel.syncOptions?.setOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            // SPEC §12: TLS first, for HTTP and WebSocket alike; the context is the latest loaded (SIGHUP).
            if let tls = node.gateway.tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.current)) }
            // A plain `/ws` upgrade is answered without NIO's HTTP pipeline; everything else gets it.
            let negotiated = channel.eventLoop.makePromise(of: Negotiated.self)
            let admission = UpgradeAdmission(node: node)
            try channel.pipeline.syncOperations.addHandler(
                DirectUpgradeHandler(
                    negotiated: negotiated,
                    queue: node.gateway.loops[channel.eventLoop].upgradeQueue,
                    admit: { head, channel in
                        (admission.admit(head, peer: channel.remoteAddress, on: channel.eventLoop),
                         extensions: compressionResponse(to: head, on: channel.eventLoop))
                    },
                    install: { upgrade, channel in try install(upgrade, on: channel, socket: socket) },
                    standardPipeline: { channel in try configureHTTPPipeline(on: channel, socket: socket, admission: admission, logger: logger) },
                    answered: { [node] in node.gateway.directUpgrades.add(1, ordering: .relaxed) }))
            // A connection must complete its first request or upgrade in time: sockets that connect and send
            // nothing, or half a request, are closed instead of held (`request-timeout-ms`).
            let deadline = node.gateway.loops[channel.eventLoop].requestDeadlines.watch(channel)
            negotiated.futureResult.assumeIsolated().whenComplete { _ in deadline.settle() }
            return Value(negotiated: negotiated.futureResult, channel: channel)
        }
    }

    /// NIO's HTTP/1 pipeline with the upgrade handler, for every connection that does not start with a plain
    /// `/ws` upgrade: API requests, Socket.IO, and upgrades with anything unusual in them.
    private func configureHTTPPipeline(
        on channel: any Channel, socket: SocketWriter?, admission: UpgradeAdmission, logger: Logger
    ) throws -> EventLoopFuture<Negotiated> {
        let rejection = NIOLoopBoundBox<UpgradeRejection?>(nil, eventLoop: channel.eventLoop)
        let admitted = NIOLoopBoundBox<AcceptedUpgrade?>(nil, eventLoop: channel.eventLoop)
        let peerIP = node.gatekeeper.addresses.clientKey(peer: channel.remoteAddress, forwardedFor: [])
        let requestGuard = HTTPRequestGuard(
            limits: .init(requestTimeout: TimeAmount(node.settings.requestTimeout)), eventLoop: channel.eventLoop,
            audit: node.gatekeeper.audit, ip: peerIP)
        let guards = NIOLoopBound((bytes: requestGuard.bytes, parts: requestGuard.parts), eventLoop: channel.eventLoop)
        let upgrader = WebSocketUpgrader<Negotiated>(
            shouldUpgrade: { channel, head in
                let extensions = compressionResponse(to: head, on: channel.eventLoop)
                let headers = HTTPHeaders(extensions.map { [("Sec-WebSocket-Extensions", $0)] } ?? [])
                if EnginePolling.handles(URI(head.uri).path) {
                    do throws(UpgradeRejection) {
                        admitted.value = try engineUpgrade(head, channel: channel, admission: admission, compressed: extensions != nil)
                        return channel.eventLoop.makeSucceededFuture(headers)
                    } catch {
                        rejection.value = error
                        return channel.eventLoop.makeSucceededFuture(nil)
                    }
                }
                return admission.admit(head, peer: channel.remoteAddress, on: channel.eventLoop).future(on: channel.eventLoop).map { upgrade -> HTTPHeaders? in
                    admitted.value = .native(upgrade, compressed: extensions != nil)
                    // The slot goes back when the connection ends, or with the reservation if the upgrade fails.
                    return headers
                }.flatMapErrorThrowing { error in
                    rejection.value = UpgradeRejection(error)
                    return nil
                }
            },
            upgradePipelineHandler: { channel, _ in
                channel.eventLoop.makeCompletedFuture {
                    guard let upgrade = admitted.value else { throw ChannelError.inappropriateOperationForState }
                    // HTTP's bounds end with HTTP: the WebSocket has its own.
                    channel.pipeline.syncOperations.removeHandler(guards.value.bytes, promise: nil)
                    channel.pipeline.syncOperations.removeHandler(guards.value.parts, promise: nil)
                    try install(upgrade, on: channel, socket: socket)
                    return Negotiated.webSocket
                }
            }
        )
        let configuration = NIOTypedHTTPServerUpgradeConfiguration<Negotiated>(
            upgraders: [upgrader],
            notUpgradingCompletionHandler: { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: node.gateway.tls != nil))
                    try channel.pipeline.syncOperations.addHandler(
                        HTTPConnectionStateHandler(idleTimeout: node.settings.requestTimeout, logger: logger))
                    let http = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                        wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                    if let refused = rejection.value { return .http(.refused(http, refused)) }
                    if let refused = admitHTTPConnection(channel, ip: peerIP) { return .http(.refused(http, refused)) }
                    // Includes upgrades with a bad handshake, which never reach our checks: the router answers them.
                    return .http(.request(http))
                }
            }
        )
        var pipeline = NIOUpgradableHTTPServerPipelineConfiguration(upgradeConfiguration: configuration)
        pipeline.enablePipelining = false
        pipeline.enableErrorHandling = false
        pipeline.enableResponseHeaderValidation = false
        try channel.pipeline.syncOperations.addHandler(guards.value.bytes)
        let negotiated = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: pipeline)
        // After the upgrade handler: it holds the first request's parts until it decides, and on an upgrade the
        // decoder hands it (not us) the bytes that followed the request.
        try channel.pipeline.syncOperations.addHandler(guards.value.parts)
        return negotiated
    }

    /// SPEC §13's cap on one IP's HTTP connections (`max-http-connections-per-ip`): the connection is counted
    /// until it closes, or refused `429` when the IP has too many. A trusted proxy's connections are not
    /// capped: they carry many clients.
    private func admitHTTPConnection(_ channel: any Channel, ip: String) -> UpgradeRejection? {
        guard !node.gatekeeper.addresses.isTrustedProxy(channel.remoteAddress) else { return nil }
        guard node.gatekeeper.httpConnections.acquire(ip) else {
            node.gatekeeper.audit.record(SecurityEvent(.httpLimit, ip: ip, detail: "over \(node.settings.maxHTTPConnectionsPerIP) HTTP connections"))
            return UpgradeRejection(
                status: .tooManyRequests, code: .rateLimited,
                message: "too many HTTP connections from this address (max-http-connections-per-ip)")
        }
        let counts = node.gatekeeper.httpConnections
        channel.closeFuture.whenComplete { _ in counts.release(ip) }
        return nil
    }

    /// Puts an accepted upgrade's handler in the pipeline, after the `101` response was written.
    private func install(_ upgrade: AcceptedUpgrade, on channel: any Channel, socket writer: SocketWriter?) throws {
        // The write buffer's high mark bounds bytes queued in NIO; the Outbox bounds the rest.
        let limit = max(node.settings.outboundBufferBytes, 64 * 1024)
        try channel.syncOptions?.setOption(ChannelOptions.writeBufferWaterMark, value: .init(low: limit / 2, high: limit))
        // The server allows half-closure for HTTP; a WebSocket has its own close handshake, so a client's TCP FIN
        // ends the connection at once instead of leaving it to the heartbeat.
        try channel.syncOptions?.setOption(ChannelOptions.allowRemoteHalfClosure, value: false)
        // Accepted sockets inherit TCP_NODELAY from the listener (NIO sets it); `tcp-nodelay: false` lets the
        // kernel gather small frames instead.
        if !node.settings.tcpNoDelay {
            try channel.syncOptions?.setOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 0)
        }
        /// The Engine.IO WebSocket transport of a session on `sessionLoop`, in the pipeline.
        func engineWebSocket(compressed: Bool, sessionLoop: any EventLoop) throws -> EngineWebSocket {
            let socket = EngineWebSocket(
                channel: channel, maxMessageBytes: node.settings.maxMessageBytes, socket: writer, sessionLoop: sessionLoop,
                deflater: compressed ? node.gateway.loops[channel.eventLoop].deflater : nil)
            try channel.pipeline.syncOperations.addHandler(socket)
            return socket
        }
        switch upgrade {
        case .native(let upgrade, let compressed, let handshake):
            try channel.pipeline.syncOperations.addHandler(
                WebSocketConnection(
                    node: node, admitted: upgrade, channel: channel, socket: writer, compressed: compressed, handshake: handshake))
        case .engineHandshake(let reservation, let compressed, let forwardedHeaders):
            let socket = try engineWebSocket(compressed: compressed, sessionLoop: channel.eventLoop)
            let connection = EngineConnection(
                node: node, eventLoop: channel.eventLoop, reservation: reservation, transport: .websocket, forwardedHeaders: forwardedHeaders)
            socket.attach(to: connection)
            connection.openWebSocket(socket)
        case .engineUpgrade(let connection, let compressed):
            let socket = try engineWebSocket(compressed: compressed, sessionLoop: connection.eventLoop)
            socket.attach(to: connection)
            let probe: @Sendable () -> Void = { if !connection.attachProbe(socket) { socket.close(code: .policyViolation, reason: "session cannot upgrade") } }
            if connection.eventLoop.inEventLoop { probe() } else { connection.eventLoop.execute(probe) }
        }
    }

    /// Waits for the connection's first request and serves it if it is HTTP (``ServerChildChannel``'s entry point;
    /// ``GatewayServer`` calls ``serve(_:logger:)`` itself once it knows).
    func handle(value: Value, logger: Logger) async {
        do {
            if case .http(let connection) = try await value.negotiated.get() { await serve(connection, logger: logger) }
        } catch {
            logger.trace("connection ended during negotiation", metadata: ["sb.error": "\(error)"])
        }
    }

    /// Serves a connection that goes on as HTTP, on a task that prefers its channel's event loop.
    func serve(_ connection: HTTPConnection, logger: Logger) async {
        switch connection {
        case .request(let http):
            await withTaskExecutorPreference(node.gateway.loops[http.channel.eventLoop].taskExecutor) {
                await handleHTTP(asyncChannel: http, logger: logger)
            }
        case .refused(let http, let rejection):
            await refuse(http, with: rejection, logger: logger)
        }
    }

    /// Checks a WebSocket upgrade on `/socket.io/` (SPEC §9): a new session (`transport=websocket`, after SPEC
    /// §3's checks before the token, which comes in CONNECT), or the upgrade of a polling session by its `sid`.
    private func engineUpgrade(
        _ head: HTTPRequestHead, channel: any Channel, admission: UpgradeAdmission, compressed: Bool
    ) throws(UpgradeRejection) -> AcceptedUpgrade {
        let query = Dictionary(URI(head.uri).queryParameters.map { (String($0.key), String($0.value)) }, uniquingKeysWith: { first, _ in first })
        guard WebSocketHandshake.key(of: head) != nil else {
            throw UpgradeRejection(status: .badRequest, code: .badRequest, message: "invalid WebSocket handshake")
        }
        switch EngineRequest.classify(method: "GET", query: query, isWebSocketUpgrade: true) {
        case .failure(let error):
            throw UpgradeRejection(status: .badRequest, code: .badRequest, message: error.message)
        case .success(.upgrade(let sid)):
            guard let connection = node.gateway.engineSessions.session(sid: sid) else {
                throw UpgradeRejection(status: .badRequest, code: .badRequest, message: EngineHTTPError.unknownSession.message)
            }
            // SPEC §9: the block list and the origin apply to the upgrade of a session too.
            let ip = admission.clientIP(peer: channel.remoteAddress, forwardedFor: head.headers["X-Forwarded-For"])
            do {
                try admission.screenSessionRequest(ip: ip, origin: head.headers["Origin"].first)
            } catch {
                connection.eventLoop.execute { connection.finish(reason: "upgrade refused: \(error.code)") }
                throw error
            }
            return .engineUpgrade(connection, compressed: compressed)
        case .success:
            let ip = admission.clientIP(peer: channel.remoteAddress, forwardedFor: head.headers["X-Forwarded-For"])
            let reservation = try admission.admitHandshake(ip: ip, origin: head.headers["Origin"].first)
            let forwarded = node.auth.hasConnectProxy ? UpgradeAdmission.forwardedHeaders(of: head.headers) : [:]
            return .engineHandshake(reservation, compressed: compressed, forwardedHeaders: forwarded)
        }
    }

    /// Answers a refused upgrade with its status and `{"error":{"code","message"}}`, then closes.
    private func refuse(
        _ http: NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, with rejection: UpgradeRejection, logger: Logger
    ) async {
        let body = ErrorBody.encode(code: rejection.code, message: rejection.message)
        do {
            try await http.executeThenClose { _, outbound in
                let head = HTTPResponse(
                    status: rejection.status,
                    headerFields: [.contentType: "application/json", .contentLength: "\(body.readableBytes)", .connection: "close"])
                try await outbound.write(contentsOf: [.head(head), .body(body), .end(nil)])
            }
        } catch {
            logger.trace("failed to write upgrade refusal", metadata: ["sb.error": "\(error)"])
        }
    }
}
