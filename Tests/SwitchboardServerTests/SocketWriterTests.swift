import NIOCore
import NIOEmbedded
import NIOPosix
import Synchronization
import Testing

@testable import SwitchboardServer

/// ``SocketWriter`` finds an accepted NIO channel's descriptor (from the runtime's field metadata) and writes to
/// it; a channel without a socket gets no writer.
@Suite struct SocketWriterTests {
    /// Keeps what a connection receives.
    final class Received: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let bytes = Mutex<[UInt8]>([])
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            bytes.withLock { $0 += buffer.readableBytesView }
        }
    }

    @Test func anAcceptedChannelsDescriptorIsFoundAndWritten() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let accepted = group.next().makePromise(of: (any Channel).self)
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                accepted.succeed(channel)
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let received = Received()
        let client = try await ClientBootstrap(group: group)
            .channelInitializer { $0.pipeline.addHandler(received) }
            .connect(to: try #require(server.localAddress)).get()
        let channel = try await accepted.futureResult.get()
        // Twice: the first looks the field offsets up, the second uses the cached ones.
        for round in 0..<2 {
            let outcome = try await channel.eventLoop.submit { () -> Bool in
                guard let writer = SocketWriter(channel: channel) else { return false }
                if case .complete = writer.send(ByteBuffer(string: "hello \(round)\n")) { return true }
                return false
            }.get()
            #expect(outcome, "round \(round): no writer, or the send did not complete")
        }
        let expected = Array("hello 0\nhello 1\n".utf8)
        let deadline = ContinuousClock.now + .seconds(5)
        while received.bytes.withLock({ $0 }) != expected && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(received.bytes.withLock { $0 } == expected)
        try await client.close()
        try? await channel.close()  // may already have seen the client's close
        try await server.close()
    }

    /// The descriptor's addresses are checked against the channel's until they first match for its classes:
    /// a second connection's writer makes no `getsockname` / `getpeername`.
    @Test func theDescriptorsPlaceIsCheckedOncePerChannelClass() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let accepted = Mutex<[any Channel]>([])
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                accepted.withLock { $0.append(channel) }
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let address = try #require(server.localAddress)
        var clients: [any Channel] = []
        for _ in 0..<2 { clients.append(try await ClientBootstrap(group: group).connect(to: address).get()) }
        let deadline = ContinuousClock.now + .seconds(5)
        while accepted.withLock({ $0.count }) < 2 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        let channels = accepted.withLock { $0 }
        try #require(channels.count == 2)
        func hasWriter(_ channel: any Channel) async throws -> Bool {
            try await channel.eventLoop.submit { SocketWriter(channel: channel) != nil }.get()
        }
        #expect(try await hasWriter(channels[0]))
        let checks = SocketWriter.addressChecks.load(ordering: .relaxed)
        #expect(try await hasWriter(channels[1]))
        #expect(SocketWriter.addressChecks.load(ordering: .relaxed) == checks, "the second channel's addresses were checked again")
        for client in clients { try await client.close() }
        for channel in channels { try? await channel.close() }
        try await server.close()
    }

    @Test func aChannelWithoutASocketHasNoWriter() throws {
        let channel = EmbeddedChannel()
        try channel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        #expect(SocketWriter(channel: channel) == nil)
        _ = try channel.finish()
    }
}
