public import NIOCore
import NIOPosix

/// A message that arrived on a subscribed Redis channel.
public struct RedisMessage: Sendable {
    /// The Redis channel it was published to.
    public let channel: String
    /// The pattern that matched, for pattern subscriptions.
    public let pattern: String?
    public let payload: ByteBuffer
}

/// A pub/sub connection: `SUBSCRIBE` / `PSUBSCRIBE`, messages handed to a callback on the connection's loop,
/// and a liveness probe (`PING`, which a subscribed RESP2 connection answers with `pong`).
///
/// A subscribed connection may only (un)subscribe and ping (Redis's rule), so commands go on a
/// ``RedisConnection``; this one only listens.
public final class RedisSubscription: RedisChannelLink {
    public let channel: any Channel
    private let handler: NIOLoopBound<RedisSubscriptionHandler>

    private init(channel: any Channel, handler: NIOLoopBound<RedisSubscriptionHandler>) {
        self.channel = channel
        self.handler = handler
    }

    /// Connects and logs in; `onMessage` is called on the connection's loop for every message, in the order
    /// Redis sent them.
    public static func connect(
        to url: RedisURL, configuration: RedisConnection.Configuration = .init(), on loop: any EventLoop,
        onMessage: @escaping @Sendable (RedisMessage) -> Void
    ) async throws -> RedisSubscription {
        let (channel, handler) = try await RedisBootstrap.connect(to: url, configuration: configuration, on: loop) {
            RedisSubscriptionHandler(configuration: configuration, onMessage: onMessage)
        }
        let subscription = RedisSubscription(channel: channel, handler: handler)
        do {
            if let auth = url.authCommand { try await subscription.command(auth) }
        } catch {
            try? await channel.close()
            throw error
        }
        return subscription
    }

    /// Subscribes to channels (in batches, as a reconnect may resubscribe thousands) and returns once Redis
    /// confirmed every one: messages published after that are delivered.
    public func subscribe(_ channels: [String]) async throws {
        for start in stride(from: 0, to: channels.count, by: 512) {
            let batch = channels[start..<min(start + 512, channels.count)]
            try await command(["SUBSCRIBE"] + batch.map { RESPArgument($0) }, replies: batch.count)
        }
    }

    public func unsubscribe(_ channels: [String]) async throws {
        guard !channels.isEmpty else { return }
        try await command(["UNSUBSCRIBE"] + channels.map { RESPArgument($0) }, replies: channels.count)
    }

    public func psubscribe(_ patterns: [String]) async throws {
        guard !patterns.isEmpty else { return }
        try await command(["PSUBSCRIBE"] + patterns.map { RESPArgument($0) }, replies: patterns.count)
    }

    /// Sends `PING` and waits for its `pong`: proof that the connection still carries messages.
    public func ping() async throws {
        try await command(["PING"])
    }

    private func command(_ arguments: [RESPArgument], replies: Int = 1) async throws {
        let handler = self.handler
        try await onLoop { promise in handler.value.send(arguments, replies: replies, promise: promise) }
    }
}

/// Parses a pub/sub connection's stream: messages to the callback, confirmations and pongs to the commands
/// that wait for them (Redis answers those in order).
final class RedisSubscriptionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private struct Waiting {
        var replies: Int
        let promise: EventLoopPromise<Void>
        let sentAt: NIODeadline
    }

    private let configuration: RedisConnection.Configuration
    private let onMessage: @Sendable (RedisMessage) -> Void
    private var parser: RESPParser
    private var waiting: [Waiting] = []
    private var context: ChannelHandlerContext?
    private var timer: RepeatedTask?

    init(configuration: RedisConnection.Configuration, onMessage: @escaping @Sendable (RedisMessage) -> Void) {
        self.configuration = configuration
        self.onMessage = onMessage
        self.parser = RESPParser(limits: configuration.parserLimits)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        timer = RedisBootstrap.scheduleTimeoutChecks(
            on: context.eventLoop, timeout: configuration.commandTimeout, oldestSentAt: { [weak self] in self?.waiting.first?.sentAt },
            onLate: { [weak self] in self?.timedOut() })
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        self.context = nil
    }

    func send(_ arguments: [RESPArgument], replies: Int, promise: EventLoopPromise<Void>) {
        guard let context, context.channel.isActive else {
            promise.fail(RedisClientError.connectionClosed)
            return
        }
        var buffer = context.channel.allocator.buffer(capacity: 64)
        buffer.writeRESPCommand(arguments)
        waiting.append(Waiting(replies: replies, promise: promise, sentAt: .now()))
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        parser.append(unwrapInboundIn(data))
        do {
            while let value = try parser.next() { handle(value, context: context) }
        } catch {
            failAll(.protocolViolation(error.description), context: context)
        }
    }

    private func handle(_ value: RESPValue, context: ChannelHandlerContext) {
        if case .error(let message) = value {
            failFirst(.server(message))
            return
        }
        // An AUTH reply (+OK) before any subscription, or a pong outside one (`+PONG`).
        guard let parts = value.array, let kind = parts.first?.string else {
            confirmFirst()
            return
        }
        switch kind {
        case "message" where parts.count == 3:
            if let channel = parts[1].string, case .bulkString(let payload?) = parts[2] {
                onMessage(RedisMessage(channel: channel, pattern: nil, payload: payload))
            }
        case "pmessage" where parts.count == 4:
            if let pattern = parts[1].string, let channel = parts[2].string, case .bulkString(let payload?) = parts[3] {
                onMessage(RedisMessage(channel: channel, pattern: pattern, payload: payload))
            }
        case "subscribe", "unsubscribe", "psubscribe", "punsubscribe", "pong":
            confirmFirst()
        default:
            break
        }
    }

    private func confirmFirst() {
        guard !waiting.isEmpty else { return }
        waiting[0].replies -= 1
        if waiting[0].replies <= 0 { waiting.removeFirst().promise.succeed() }
    }

    private func failFirst(_ error: RedisClientError) {
        guard !waiting.isEmpty else { return }
        waiting.removeFirst().promise.fail(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(.connectionClosed, context: context)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(.connectionClosed, context: context)
    }

    private func timedOut() {
        guard let context else { return }
        failAll(.timedOut, context: context)
    }

    private func failAll(_ error: RedisClientError, context: ChannelHandlerContext) {
        timer?.cancel()
        let failed = waiting
        waiting.removeAll()
        for request in failed { request.promise.fail(error) }
        context.close(promise: nil)
    }
}
