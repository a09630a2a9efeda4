import NIOCore
import NIOPosix
import Synchronization
import Testing
import WebSocketTestClient

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
        listener.startAccepting(maxPending: 1) { descriptor, done in
            ClientBootstrap(group: group.next())
                .channelInitializer { $0.pipeline.addHandler(serverReceived) }
                .withConnectedSocket(descriptor)
                .whenComplete { result in
                    done()
                    adopted.completeWith(result.map { ($0, descriptor) })
                }
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
        listener.startAccepting(maxPending: 1) { descriptor, done in
            accepted.add(1, ordering: .relaxed)
            ClientBootstrap(group: group.next()).withConnectedSocket(descriptor).whenComplete { result in
                done()
                if case .success(let channel) = result { channel.close(promise: nil) }
            }
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

    /// A weak reference to a channel.
    final class WeakChannel: @unchecked Sendable {
        weak var channel: (any Channel & AnyObject)?
    }

    /// Once a node's connection closed, nothing holds it: a connect storm must not grow the node (SPEC §13).
    /// An API request, an upgrade the pool refuses, and a WebSocket the client closes.
    @Test(arguments: ["api", "refused", "websocket", "websocket-dropped"])
    func aClosedConnectionOfTheNodeIsFreed(_ kind: String) async throws {
        try await TestNode.with({ if kind == "refused" { $0.maxConnectionsPerIP = 1 } }) { node in
            // With a pool of one, this client makes the next upgrade a refusal.
            let held = kind == "refused" ? try await node.client() : nil
            let before = node.openConnections.count
            let raw = try await RawSocket.connect(port: node.port)
            let deadline = ContinuousClock.now + .seconds(5)
            while node.openConnections.count == before && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
            try #require(node.openConnections.count == before + 1)
            let weak = WeakChannel()
            weak.channel = node.openConnections.channels.first { $0.remoteAddress?.port == raw.localPort } as? (any Channel & AnyObject)
            #expect(weak.channel != nil)
            let upgrade = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            switch kind {
            case "api":
                try await raw.send(Array("GET /api/v1/websocket/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8))
                #expect(try await raw.waitForClose(timeout: .seconds(5)))
            case "refused":
                try await raw.send(Array(upgrade.utf8))
                #expect(try await raw.waitForClose(timeout: .seconds(5)))
                #expect(raw.received.hasPrefix("HTTP/1.1 429"))
            default:
                try await raw.send(Array(upgrade.utf8))
                #expect(await raw.waitFor("welcome", timeout: .seconds(5)))
                if kind == "websocket" {
                    try await raw.send([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8])  // close 1000, masked with a zero key
                    #expect(try await raw.waitForClose(timeout: .seconds(5)))
                } else {
                    await raw.close()
                }
            }
            while (weak.channel != nil || node.openConnections.count > before) && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
            }
            #expect(weak.channel == nil, "the closed connection's channel is still held")
            await held?.close()
        }
    }

    /// No more than `maxPending` connections are taken from the kernel's backlog ahead of their adoption: a
    /// reconnect storm waits in the kernel, not as half-made channels in the process.
    @Test func acceptingWaitsForTheLoopsToAdoptWhatItTook() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let listener = try ListeningSocket(host: "127.0.0.1", port: 0, backlog: 16)
        let taken = Mutex<[(descriptor: CInt, done: @Sendable () -> Void)]>([])
        listener.startAccepting(maxPending: 1) { descriptor, done in taken.withLock { $0.append((descriptor, done)) } }
        var clients: [any Channel] = []
        for _ in 0..<2 { clients.append(try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: listener.port).get()) }
        func waitForTaken(_ count: Int) async throws {
            let deadline = ContinuousClock.now + .seconds(5)
            while taken.withLock({ $0.count }) < count && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        }
        try await waitForTaken(1)
        try await Task.sleep(for: .milliseconds(200))
        #expect(taken.withLock { $0.count } == 1, "a second connection was taken before the first was adopted")
        taken.withLock { $0[0].done() }
        try await waitForTaken(2)
        #expect(taken.withLock { $0.count } == 2)
        for (descriptor, done) in taken.withLock({ $0 }) {
            ClientBootstrap(group: group).withConnectedSocket(descriptor).whenSuccess { $0.close(promise: nil) }
            done()
        }
        for client in clients { try? await client.close() }
        listener.close()
    }

    @Test func aPortInUseIsAClearError() throws {
        let first = try ListeningSocket(host: "127.0.0.1", port: 0, backlog: 16)
        #expect(throws: ListeningSocket.BindError.self) { try ListeningSocket(host: "127.0.0.1", port: first.port, backlog: 16) }
        first.close()
    }
}
