import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import SwitchboardServer

/// ``ListeningSocket`` accepts connections itself and NIO adopts each one (`withConnectedSocket`), so the node
/// knows every connection's descriptor and ``SocketWriter`` writes to it; ``ListeningSocket/close()`` stops it.
@Suite struct ListeningSocketTests {
    /// Keeps what a connection receives.
    final class Received: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let bytes = Mutex<[UInt8]>([])
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            bytes.withLock { $0 += buffer.readableBytesView }
        }
    }

    @Test func anAcceptedConnectionIsAdoptedByNIOAndItsDescriptorWritten() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let listener = try ListeningSocket(host: "127.0.0.1", port: 0, backlog: 16)
        let adopted = group.next().makePromise(of: (channel: any Channel, descriptor: CInt).self)
        let serverReceived = Received()
        listener.startAccepting { descriptor in
            ClientBootstrap(group: group.next())
                .channelInitializer { $0.pipeline.addHandler(serverReceived) }
                .withConnectedSocket(descriptor)
                .whenComplete { result in adopted.completeWith(result.map { ($0, descriptor) }) }
        }
        let received = Received()
        let client = try await ClientBootstrap(group: group)
            .channelInitializer { $0.pipeline.addHandler(received) }
            .connect(host: "127.0.0.1", port: listener.port).get()
        let (channel, descriptor) = try await adopted.futureResult.get()
        // An ordinary NIO channel: its addresses are the client's, and it reads what the client sends.
        #expect(channel.remoteAddress == client.localAddress)
        try await client.writeAndFlush(ByteBuffer(string: "ping")).get()
        // The descriptor is the channel's: written to directly, and through NIO after it, in order.
        let outcome = try await channel.eventLoop.submit { () -> Bool in
            if case .complete = SocketWriter(descriptor: descriptor).send(ByteBuffer(string: "direct\n")) { return true }
            return false
        }.get()
        #expect(outcome)
        try await channel.writeAndFlush(ByteBuffer(string: "through NIO\n")).get()
        let expected = Array("direct\nthrough NIO\n".utf8)
        let deadline = ContinuousClock.now + .seconds(5)
        while (received.bytes.withLock { $0 } != expected || serverReceived.bytes.withLock { $0 }.count < 4) && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(received.bytes.withLock { $0 } == expected)
        #expect(serverReceived.bytes.withLock { $0 } == Array("ping".utf8))
        try await client.close()
        try? await channel.close()  // may already have seen the client's close
        listener.close()
    }

    /// `close()` returns once the accepting thread stopped; the port then refuses connections.
    @Test func closeStopsAccepting() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let listener = try ListeningSocket(host: "127.0.0.1", port: 0, backlog: 16)
        let accepted = Atomic<Int>(0)
        listener.startAccepting { descriptor in
            accepted.add(1, ordering: .relaxed)
            ClientBootstrap(group: group.next()).withConnectedSocket(descriptor).whenSuccess { $0.close(promise: nil) }
        }
        let first = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: listener.port).get()
        let deadline = ContinuousClock.now + .seconds(5)
        while accepted.load(ordering: .relaxed) < 1 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(accepted.load(ordering: .relaxed) == 1)
        try? await first.close()
        listener.close()
        await #expect(throws: (any Error).self) {
            try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: listener.port).get()
        }
        #expect(accepted.load(ordering: .relaxed) == 1)
    }

    @Test func aPortInUseIsAClearError() throws {
        let first = try ListeningSocket(host: "127.0.0.1", port: 0, backlog: 16)
        #expect(throws: ListeningSocket.BindError.self) { try ListeningSocket(host: "127.0.0.1", port: first.port, backlog: 16) }
        first.close()
    }
}
