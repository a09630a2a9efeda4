public import NIOCore
import NIOPosix

/// What ``RedisConnection`` and ``RedisSubscription`` share: connecting a channel with one handler, the
/// login command, and the timer that fails a connection whose oldest request waits too long.
enum RedisBootstrap {
    /// Connects to `url` with `makeHandler()` as the channel's only handler; returns the channel and the
    /// handler, bound to the channel's loop.
    static func connect<Handler: ChannelHandler>(
        to url: RedisURL, configuration: RedisConnection.Configuration, on loop: any EventLoop,
        makeHandler: @escaping @Sendable () -> Handler
    ) async throws -> (any Channel, NIOLoopBound<Handler>) {
        let channel = try await ClientBootstrap(group: loop)
            .connectTimeout(configuration.connectTimeout)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(makeHandler()) }
            }
            .connect(host: url.host, port: url.port).get()
        let handler = try await channel.eventLoop.submit {
            NIOLoopBound(try channel.pipeline.syncOperations.handler(type: Handler.self), eventLoop: channel.eventLoop)
        }.get()
        return (channel, handler)
    }

    /// Checks about four times per `timeout` whether the oldest request (sent at `oldestSentAt()`) is late.
    /// On the loop (its callers' `handlerAdded`).
    static func scheduleTimeoutChecks(
        on loop: any EventLoop, timeout: TimeAmount, oldestSentAt: @escaping () -> NIODeadline?, onLate: @escaping () -> Void
    ) -> RepeatedTask {
        let period = TimeAmount.nanoseconds(max(timeout.nanoseconds / 4, 10_000_000))
        // The closures belong to a handler of `loop`, and the task runs on `loop`.
        let callbacks = NIOLoopBound((oldestSentAt, onLate), eventLoop: loop)
        return loop.scheduleRepeatedTask(initialDelay: period, delay: period) { _ in
            if let sentAt = callbacks.value.0(), NIODeadline.now() - sentAt > timeout { callbacks.value.1() }
        }
    }
}

extension RedisURL {
    /// `AUTH [user] password` when the URL has a password.
    var authCommand: [RESPArgument]? {
        guard let password else { return nil }
        return username.map { ["AUTH", RESPArgument($0), RESPArgument(password)] } ?? ["AUTH", RESPArgument(password)]
    }
}

/// A Redis connection over one NIO channel whose handler lives on the channel's loop: how both kinds close, say
/// they closed, and hand a request to their handler.
public protocol RedisChannelLink: Sendable {
    var channel: any Channel { get }
}

extension RedisChannelLink {
    /// Closes the connection; requests waiting for replies fail with ``RedisClientError/connectionClosed``.
    public func close() async {
        try? await channel.close()
    }

    /// Completes when the connection has closed, for whatever reason.
    public var closeFuture: EventLoopFuture<Void> { channel.closeFuture }

    /// Runs `send` on the channel's loop with a promise for its answer, and waits for the answer.
    func onLoop<Value: Sendable>(_ send: @escaping @Sendable (EventLoopPromise<Value>) -> Void) async throws -> Value {
        let promise = channel.eventLoop.makePromise(of: Value.self)
        channel.eventLoop.execute { send(promise) }
        return try await promise.futureResult.get()
    }
}
