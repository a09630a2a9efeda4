import Foundation
import NIOCore
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// SPEC §3's close codes and heartbeats, on a live node.
@Suite struct CloseCodeTests {
    @Test func frameOverMaxMessageBytesClosesWith1009() async throws {
        try await TestNode.with({ $0.maxMessageBytes = 1024 }) { node in
            let client = try await node.client()
            try await client.socket.send(#"{"type":"ping","pad":""# + String(repeating: "x", count: 2000) + #""}"#)
            #expect(try await client.closeCode() == 1009)
        }
    }

    /// Issue 13, defect 1: after a refused frame the client's close reply sits unread behind the rest of that
    /// frame, so the server must not wait for it: the close code, then an orderly end of the stream, at once.
    @Test(arguments: [
        ("just over the limit", OversizedFrame.payload(5_000)),
        ("ten times the limit", OversizedFrame.payload(40_960)),
        ("announcing 2^63 bytes", OversizedFrame.header(announcing: 1 << 63)),
    ])
    func refusedFrameEndsTheConnectionAtOnce(case name: String, frame: [UInt8]) async throws {
        try await TestNode.with({ $0.maxMessageBytes = 4096 }) { node in
            let client = try await node.client()
            let sent = ContinuousClock.now
            try await client.socket.sendRaw(frame)
            // Fully closed in milliseconds here; the bounds leave room for a loaded CI machine and stay far below
            // the 5 s close-handshake timer the client used to wait for.
            #expect(try await client.closeCode(timeout: .seconds(2)) == 1009, "\(name)")
            let end = await client.socket.streamEnd(timeout: .seconds(2))
            #expect(end == .finished, "\(name): the stream must end by FIN at once, not \(String(describing: end))")
            #expect(ContinuousClock.now - sent < .seconds(2), "\(name): fully closed at once")
        }
    }

    @Test func protocolErrorEndsTheConnectionAtOnceWith1002() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            // An unmasked frame followed, in the same write, by bytes that are never read as frames.
            let unmasked = WireParser.clientFrame(opcode: 0x1, payload: Array(#"{"type":"ping"}"#.utf8), masked: false)
            try await client.socket.sendRaw(Array(unmasked.readableBytesView) + [UInt8](repeating: 0x41, count: 3_000))
            #expect(try await client.closeCode(timeout: .seconds(2)) == 1002)
            #expect(await client.socket.streamEnd(timeout: .seconds(2)) == .finished)
        }
    }

    @Test func fragmentedMessageOverMaxMessageBytesClosesWith1009() async throws {
        try await TestNode.with({ $0.maxMessageBytes = 1024 }) { node in
            let client = try await node.client()
            let chunk = [UInt8](repeating: 0x20, count: 800)
            try await client.socket.sendFrame(opcode: 0x1, payload: chunk, fin: false)
            try await client.socket.sendFrame(opcode: 0x0, payload: chunk, fin: true)
            #expect(try await client.closeCode() == 1009)
        }
    }

    @Test func unauthenticatedConnectionClosesWith4001WhenAnonymousIsOff() async throws {
        try await TestNode.with({
            $0.allowAnonymous = false
            // Long enough for a loaded machine (the full suite runs in parallel) to connect and ask before it ends.
            $0.authTimeout = .milliseconds(2_000)
        }) { node in
            let client = try await node.client()
            let reply = try await client.request(["type": "subscribe", "channel": "system_status"])
            #expect(reply["code"] as? String == "UNAUTHORIZED")
            #expect(try await client.closeCode() == 4001)
        }
    }

    @Test func authenticatingInTimeKeepsConnectionWhenAnonymousIsOff() async throws {
        try await TestNode.with({
            $0.allowAnonymous = false
            // Long enough for a loaded machine to verify a first token in time, and slept past below.
            $0.authTimeout = .milliseconds(1_500)
        }) { node in
            let token = try await node.token("alice")
            let client = try await node.client()
            let reply = try await client.request(["type": "auth", "token": token])
            #expect(reply["type"] as? String == "authenticated")
            try await Task.sleep(for: .milliseconds(1_800))
            #expect(try await client.request(["type": "ping"])["type"] as? String == "pong")
            await client.close()
        }
    }

    @Test func expiringTokenClosesWith4004() async throws {
        try await TestNode.with { node in
            // 6 s: `exp` is whole seconds (up to 1 s less), and a slow upgrade under the full parallel suite on two
            // cores must not meet an already expired token (3 s did, about one run in three).
            let client = try await node.client(token: try await node.token("alice", ttl: .seconds(6)))
            #expect(try await client.closeCode(timeout: .seconds(11)) == 4004)
        }
    }

    @Test func freshAuthBeforeExpiryKeepsConnection() async throws {
        try await TestNode.with { node in
            // 6 s leave room for a loaded machine to connect and re-authenticate before the first token expires
            // (`exp` is whole seconds; 3 s were too few under the full parallel suite on two cores).
            let client = try await node.client(token: try await node.token("alice", ttl: .seconds(6)))
            let reply = try await client.request(["type": "auth", "token": try await node.token("alice", ttl: .seconds(60))])
            #expect(reply["type"] as? String == "authenticated")
            try await Task.sleep(for: .seconds(6.5))
            #expect(try await client.request(["type": "ping"])["type"] as? String == "pong")
            await client.close()
        }
    }

    @Test func inBandAuthOverThePerUserPoolClosesWith4029() async throws {
        try await TestNode.with({ $0.maxConnectionsPerUser = 1 }) { node in
            let token = try await node.token("alice")
            let first = try await node.client(token: token)
            let second = try await node.client()
            try await second.send(["type": "auth", "token": token])
            #expect(try await second.closeCode() == 4029)
            #expect(try await first.request(["type": "ping"])["type"] as? String == "pong")
            await first.close()
        }
    }

    @Test func messageFloodOverThreeTimesTheLimitClosesWith4008() async throws {
        try await TestNode.with({
            $0.messageBurst = 5
            $0.messageRate = 1
        }) { node in
            let client = try await node.client()
            // The server may close before the last sends; that is the point.
            for _ in 0..<20 { try? await client.send(["type": "ping"]) }
            #expect(try await client.closeCode() == 4008)
        }
    }

    @Test func framingViolationsCloseWith1002() async throws {
        try await TestNode.with { node in
            // RSV1 without a negotiated extension, and a ping split into fragments (RFC 6455 §5.2, §5.5).
            for bytes in [WireParser.clientFrame(opcode: 0x41, payload: [0x61]), WireParser.clientFrame(opcode: 0x9, payload: [1], fin: false)] {
                let client = try await node.client()
                try await client.socket.sendRaw(Array(bytes.readableBytesView))
                #expect(try await client.closeCode() == 1002)
            }
        }
    }

    @Test func unmaskedClientFrameClosesWith1002() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            try await client.socket.sendFrame(opcode: 0x1, payload: Array(#"{"type":"ping"}"#.utf8), masked: false)
            #expect(try await client.closeCode() == 1002)
        }
    }

    @Test func clientCloseIsEchoed() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            try await client.socket.sendFrame(opcode: 0x8, payload: [0x03, 0xE8])
            #expect(try await client.closeCode() == 1000)
            try await waitUntil { node.node.connections.count == 0 }
        }
    }

    @Test func gracefulShutdownClosesWith1001() async throws {
        var client: TestClient?
        try await TestNode.with { node in
            client = try await node.client()
        }
        let frame = try #require(try await client?.socket.closeFrame())
        #expect(frame.closeCode == 1001)
        #expect(frame.closeReason == "server shutting down")
    }

    @Test func silentConnectionIsClosedAfterTwoHeartbeats() async throws {
        try await TestNode.with({ $0.heartbeat = .milliseconds(200) }) { node in
            let client = try await node.client(answerPings: false)
            // The server pings, gets no answer, and drops the connection without a close frame.
            let first = try await client.socket.nextFrame()
            #expect(first.opcode == 0x9)
            #expect(try await client.closeCode(timeout: .seconds(3)) == nil)
            try await waitUntil { node.node.connections.count == 0 }
        }
    }

    @Test func connectionAnsweringPingsStaysOpen() async throws {
        // Three ping intervals; each long enough for a loaded 2-core CI machine to answer (200 ms was not, once).
        try await TestNode.with({ $0.heartbeat = .milliseconds(600) }) { node in
            let client = try await node.client(answerPings: true)
            try await Task.sleep(for: .milliseconds(2_000))
            #expect(try await client.request(["type": "ping"])["type"] as? String == "pong")
            await client.close()
        }
    }
}

/// Client frames the server must refuse for their size (masked, as a client's must be).
enum OversizedFrame {
    /// A whole text frame of `length` bytes.
    static func payload(_ length: Int) -> [UInt8] {
        header(announcing: UInt64(length)) + [UInt8](repeating: 0x20, count: length)
    }

    /// Just the header of a text frame announcing `length` bytes, with its masking key.
    static func header(announcing length: UInt64) -> [UInt8] {
        var bytes: [UInt8] = [0x81]
        switch length {
        case ..<126: bytes.append(0x80 | UInt8(length))
        case ..<65_536: bytes += [0x80 | 126, UInt8(length >> 8), UInt8(length & 0xFF)]
        default: bytes += [0x80 | 127] + (0..<8).reversed().map { UInt8((length >> (8 * UInt64($0))) & 0xFF) }
        }
        return bytes + [0, 0, 0, 0]  // an all-zero mask leaves the payload as sent
    }
}
