public import NIOCore
import NIOPosix
import Synchronization

/// A bare TCP connection for sending arbitrary bytes, reading what comes back and seeing when the server closes it.
public final class RawSocket: Sendable {
    private let channel: any Channel
    private let inbox: Inbox

    /// What the server sent, kept as it arrives.
    private final class Inbox: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let bytes = Mutex<[UInt8]>([])

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            bytes.withLock { $0 += buffer.readableBytesView }
        }
    }

    private init(channel: any Channel, inbox: Inbox) {
        self.channel = channel
        self.inbox = inbox
    }

    public static func connect(port: Int, host: String = "127.0.0.1", localAddress: String? = nil) async throws -> RawSocket {
        let inbox = Inbox()
        var bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(inbox) }
            }
        if let localAddress { bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: localAddress, port: 0)) }
        return RawSocket(channel: try await bootstrap.connect(host: host, port: port).get(), inbox: inbox)
    }

    /// Closes the connection (no WebSocket close frame: the client just leaves).
    public func close() async {
        try? await channel.close()
    }

    /// The connection's own port.
    public var localPort: Int? { channel.localAddress?.port }

    public func send(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
    }

    /// Everything the server sent so far, as text.
    public var received: String { String(decoding: inbox.bytes.withLock { $0 }, as: UTF8.self) }

    /// Waits up to `timeout` until what the server sent contains `text`; whether it does.
    public func waitFor(_ text: String, timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if received.contains(text) { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return received.contains(text)
    }

    /// Whether the server closed the connection within `timeout` (after which we close it ourselves).
    public func waitForClose(timeout: Duration) async throws -> Bool {
        let channel = self.channel
        return await withTaskGroup(of: Bool?.self) { race in
            race.addTask {
                try? await channel.closeFuture.get()
                return true
            }
            race.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await race.next() ?? nil
            // On a timeout our own close ends the first task, so the group can finish.
            if first == false { try? await channel.close() }
            race.cancelAll()
            return first ?? false
        }
    }
}
