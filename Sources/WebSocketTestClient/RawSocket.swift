public import NIOCore
import NIOPosix

/// A bare TCP connection for sending arbitrary bytes and seeing when the server closes it.
public final class RawSocket: Sendable {
    private let channel: any Channel

    private init(channel: any Channel) {
        self.channel = channel
    }

    public static func connect(port: Int, host: String = "127.0.0.1", localAddress: String? = nil) async throws -> RawSocket {
        var bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                // Reads are discarded: only the close matters.
                channel.eventLoop.makeSucceededVoidFuture()
            }
        if let localAddress { bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: localAddress, port: 0)) }
        return RawSocket(channel: try await bootstrap.connect(host: host, port: port).get())
    }

    public func send(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
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
