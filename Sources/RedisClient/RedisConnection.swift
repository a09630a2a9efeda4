import DequeModule
public import NIOCore
import NIOPosix

/// Errors of a Redis connection.
public struct RedisClientError: Error, Sendable, Equatable, CustomStringConvertible {
    private enum Kind: Sendable, Equatable {
        case closed, timedOut, tooManyPending, server(String), protocolViolation(String)
    }

    private let kind: Kind

    /// The connection closed before the reply came.
    public static let connectionClosed = RedisClientError(kind: .closed)
    /// Redis did not answer within the command timeout (the connection is closed).
    public static let timedOut = RedisClientError(kind: .timedOut)
    /// More commands were waiting for replies than the connection allows.
    public static let tooManyPending = RedisClientError(kind: .tooManyPending)
    /// Redis answered with an error reply (`-ERR …`, `-NOSCRIPT …`).
    public static func server(_ message: String) -> RedisClientError { RedisClientError(kind: .server(message)) }
    static func protocolViolation(_ message: String) -> RedisClientError { RedisClientError(kind: .protocolViolation(message)) }

    /// The server's error message, for error replies.
    public var serverMessage: String? {
        if case .server(let message) = kind { return message }
        return nil
    }

    public var description: String {
        switch kind {
        case .closed: "connection to Redis closed"
        case .timedOut: "Redis did not answer in time"
        case .tooManyPending: "too many Redis commands waiting for replies"
        case .server(let message): "Redis error: \(message)"
        case .protocolViolation(let message): "Redis protocol error: \(message)"
        }
    }
}

/// One pipelined command connection to Redis: commands are written as they come (many in one write when
/// sent together) and replies are matched to them in order, as RESP guarantees.
public final class RedisConnection: RedisChannelLink {
    /// Limits and timeouts of one connection.
    public struct Configuration: Sendable {
        /// Longest wait to establish the TCP connection.
        public var connectTimeout: TimeAmount
        /// Longest a command may wait for its reply before the connection is deemed dead and closed.
        public var commandTimeout: TimeAmount
        /// Most commands waiting for replies at once; more fail at once with ``RedisClientError/tooManyPending``.
        public var maxPendingCommands: Int
        /// Bounds on replies.
        public var parserLimits: RESPParser.Limits

        public init(
            connectTimeout: TimeAmount = .seconds(2), commandTimeout: TimeAmount = .seconds(2), maxPendingCommands: Int = 100_000,
            parserLimits: RESPParser.Limits = .init()
        ) {
            self.connectTimeout = connectTimeout
            self.commandTimeout = commandTimeout
            self.maxPendingCommands = maxPendingCommands
            self.parserLimits = parserLimits
        }
    }

    public let channel: any Channel
    private let handler: NIOLoopBound<RedisCommandHandler>

    private init(channel: any Channel, handler: NIOLoopBound<RedisCommandHandler>) {
        self.channel = channel
        self.handler = handler
    }

    /// Connects, then logs in and selects the URL's database.
    public static func connect(
        to url: RedisURL, configuration: Configuration = .init(), on loop: any EventLoop
    ) async throws -> RedisConnection {
        let (channel, handler) = try await RedisBootstrap.connect(to: url, configuration: configuration, on: loop) {
            RedisCommandHandler(configuration: configuration)
        }
        let connection = RedisConnection(channel: channel, handler: handler)
        do {
            try await connection.logIn(url)
        } catch {
            try? await channel.close()
            throw error
        }
        return connection
    }

    /// `AUTH` and `SELECT` as the URL says.
    func logIn(_ url: RedisURL) async throws {
        if let auth = url.authCommand { _ = try await send(auth) }
        if url.database != 0 { _ = try await send(["SELECT", RESPArgument(url.database)]) }
    }

    /// Sends one command and returns its reply; an error reply throws ``RedisClientError/server(_:)``.
    public func send(_ arguments: [RESPArgument]) async throws -> RESPValue {
        let replies = try await pipeline([arguments])
        if case .error(let message) = replies[0] { throw RedisClientError.server(message) }
        return replies[0]
    }

    /// Sends `commands` in one write and returns their replies in order; error replies are returned, not thrown.
    public func pipeline(_ commands: [[RESPArgument]]) async throws -> [RESPValue] {
        guard !commands.isEmpty else { return [] }
        let handler = self.handler
        return try await onLoop { promise in handler.value.write(commands, promise: promise) }
    }
}

/// The pipeline handler behind ``RedisConnection``: encodes commands, parses replies and hands each to the
/// oldest waiting request, failing everything when the connection ends or a reply is late.
final class RedisCommandHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// A write of one or more commands, waiting for as many replies.
    private struct Request {
        var expected: Int
        var replies: [RESPValue]
        let promise: EventLoopPromise<[RESPValue]>
        let sentAt: NIODeadline
    }

    private let configuration: RedisConnection.Configuration
    private var parser: RESPParser
    private var waiting: Deque<Request> = []
    private var pendingCommands = 0
    private var context: ChannelHandlerContext?
    private var timer: RepeatedTask?
    private var failure: RedisClientError?

    init(configuration: RedisConnection.Configuration) {
        self.configuration = configuration
        self.parser = RESPParser(limits: configuration.parserLimits)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        timer = RedisBootstrap.scheduleTimeoutChecks(
            on: context.eventLoop, timeout: configuration.commandTimeout, oldestSentAt: { [weak self] in self?.waiting.first?.sentAt },
            onLate: { [weak self] in self?.timedOut() })
    }

    func write(_ commands: [[RESPArgument]], promise: EventLoopPromise<[RESPValue]>) {
        guard let context, failure == nil else {
            promise.fail(RedisClientError.connectionClosed)
            return
        }
        guard pendingCommands + commands.count <= configuration.maxPendingCommands else {
            promise.fail(RedisClientError.tooManyPending)
            return
        }
        var buffer = context.channel.allocator.buffer(capacity: 64 * commands.count)
        for command in commands { buffer.writeRESPCommand(command) }
        waiting.append(Request(expected: commands.count, replies: [], promise: promise, sentAt: .now()))
        pendingCommands += commands.count
        waiting[waiting.count - 1].replies.reserveCapacity(commands.count)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        parser.append(unwrapInboundIn(data))
        do {
            while let reply = try parser.next() {
                guard !waiting.isEmpty else {
                    fail(.protocolViolation("a reply nobody asked for: \(reply)"), context: context)
                    return
                }
                pendingCommands -= 1
                waiting[waiting.startIndex].replies.append(reply)
                if waiting[waiting.startIndex].replies.count == waiting[waiting.startIndex].expected {
                    let request = waiting.removeFirst()
                    request.promise.succeed(request.replies)
                }
            }
        } catch {
            fail(.protocolViolation(error.description), context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(.connectionClosed, context: context)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(.connectionClosed, context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        self.context = nil
    }

    private func timedOut() {
        guard let context else { return }
        fail(.timedOut, context: context)
    }

    /// Fails every waiting command and closes: after a timeout or a protocol error, replies could no longer
    /// be matched to their commands.
    private func fail(_ error: RedisClientError, context: ChannelHandlerContext) {
        if failure == nil { failure = error }
        timer?.cancel()
        let failed = waiting
        waiting.removeAll()
        pendingCommands = 0
        for request in failed { request.promise.fail(error) }
        context.close(promise: nil)
    }
}
