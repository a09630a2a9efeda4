import Foundation
import NIOCore
import NIOEmbedded
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// SPEC §13's HTTP bounds on a live node (issue 34, defects 3, 11, 12): heads and bodies within
/// `request-timeout-ms`, 401 from the head, 431 for a head over its bound, bounded pipelining and a cap on
/// one IP's HTTP connections.
@Suite struct HTTPBoundsTests {
    private static let health = "GET /api/v1/websocket/health HTTP/1.1\r\nHost: x\r\n\r\n"

    @Test func trickledBodiesAndHeadsAreClosedWithinTheRequestTimeout() async throws {
        try await TestNode.with({ $0.requestTimeout = .milliseconds(1_000) }) { node in
            let admin = try await node.token("ops", role: .admin)
            // A body within the size bound, from an admin, one byte every 100 ms (50 s in all).
            let body = try await RawSocket.connect(port: node.port)
            try await body.send(Array(
                "POST /api/v1/websocket/broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(admin)\r\nContent-Length: 500\r\n\r\n{".utf8))
            // The issue's case: no token, a huge Content-Length: refused from the head, then the body trickles.
            let refused = try await RawSocket.connect(port: node.port)
            try await refused.send(Array("POST /api/v1/websocket/broadcast HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n{".utf8))
            // A second request's head, trickled after a first one was answered on the same connection.
            let head = try await RawSocket.connect(port: node.port)
            try await head.send(Array(Self.health.utf8))
            #expect(await head.waitFor("200 OK", timeout: .seconds(2)))
            try await head.send(Array("GET /api/v1/websocket/health HTTP/1.1\r\nHost: x\r\nX-Slow: ".utf8))
            let started = ContinuousClock.now
            let trickles = [body, refused, head].map { socket in
                Task {
                    for _ in 0..<500 {
                        try await socket.send(Array("a".utf8))
                        try await Task.sleep(for: .milliseconds(100))
                    }
                }
            }
            #expect(try await body.waitForClose(timeout: .seconds(3)), "a body trickled past request-timeout-ms is cut")
            #expect(try await refused.waitForClose(timeout: .seconds(3)), "so is the body of a refused request")
            #expect(try await head.waitForClose(timeout: .seconds(3)), "and a head")
            #expect(ContinuousClock.now - started < .seconds(2) + .milliseconds(500), "within request-timeout-ms + 1 s")
            #expect(refused.received.hasPrefix("HTTP/1.1 401"), "401 from the head: \(refused.received.prefix(40))")
            for trickle in trickles { trickle.cancel() }
        }
    }

    @Test func anAdminRouteRefusesFromTheHeadBeforeTheBodyArrives() async throws {
        try await TestNode.with { node in
            let socket = try await RawSocket.connect(port: node.port)
            try await socket.send(Array("POST /api/v1/websocket/broadcast HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n{".utf8))
            #expect(await socket.waitFor("401 Unauthorized", timeout: .seconds(3)), "got \(socket.received.prefix(80))")
        }
    }

    @Test func aHeadOverItsBoundIsAnswered431() async throws {
        try await TestNode.with { node in
            let first = try await RawSocket.connect(port: node.port)
            try await first.send(Array("GET /api/v1/websocket/health HTTP/1.1\r\nHost: x\r\n\(String(repeating: "X-Filler: 0123456789\r\n", count: 5_000))\r\n".utf8))
            #expect(await first.waitFor("431 Request Header Fields Too Large", timeout: .seconds(3)), "got \(first.received.prefix(80))")
            #expect(try await first.waitForClose(timeout: .seconds(2)))
            // Endless header lines on a keep-alive connection's second request.
            let second = try await RawSocket.connect(port: node.port)
            try await second.send(Array(Self.health.utf8))
            #expect(await second.waitFor("200 OK", timeout: .seconds(2)))
            try await second.send(Array("GET /api/v1/websocket/health HTTP/1.1\r\n".utf8))
            for _ in 0..<40 { try? await second.send(Array(String(repeating: "X-Endless: yes\r\n", count: 100).utf8)) }
            #expect(await second.waitFor("431", timeout: .seconds(3)))
            #expect(try await second.waitForClose(timeout: .seconds(2)))
            // A head under the bound is served.
            let fine = try await RawSocket.connect(port: node.port)
            try await fine.send(Array("GET /api/v1/websocket/health HTTP/1.1\r\nHost: x\r\nCookie: \(String(repeating: "c", count: 8_000))\r\n\r\n".utf8))
            #expect(await fine.waitFor("200 OK", timeout: .seconds(3)))
        }
    }

    @Test func pipeliningIsBoundedAndAnsweredInOrderWithinTheBound() async throws {
        try await TestNode.with { node in
            let polite = try await RawSocket.connect(port: node.port)
            try await polite.send(Array(String(repeating: Self.health, count: 16).utf8))
            let deadline = ContinuousClock.now + .seconds(5)
            while polite.received.components(separatedBy: "200 OK").count - 1 < 16, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(polite.received.components(separatedBy: "200 OK").count - 1 == 16, "16 pipelined requests are all answered")
            let greedy = try await RawSocket.connect(port: node.port)
            try await greedy.send(Array(String(repeating: Self.health, count: 200).utf8))
            #expect(try await greedy.waitForClose(timeout: .seconds(3)), "more than 16 waiting for their responses: closed")
            #expect(greedy.received.components(separatedBy: "200 OK").count - 1 < 200)
        }
    }

    @Test func oneIPsHTTPConnectionsAreCapped() async throws {
        try await TestNode.with({ $0.maxHTTPConnectionsPerIP = 2 }) { node in
            var open: [RawSocket] = []
            for _ in 0..<2 {
                let socket = try await RawSocket.connect(port: node.port, localAddress: "127.0.0.21")
                try await socket.send(Array(Self.health.utf8))
                #expect(await socket.waitFor("200 OK", timeout: .seconds(2)))
                open.append(socket)
            }
            let third = try await RawSocket.connect(port: node.port, localAddress: "127.0.0.21")
            try await third.send(Array(Self.health.utf8))
            #expect(await third.waitFor("429 Too Many Requests", timeout: .seconds(2)), "got \(third.received.prefix(80))")
            let elsewhere = try await RawSocket.connect(port: node.port, localAddress: "127.0.0.22")
            try await elsewhere.send(Array(Self.health.utf8))
            #expect(await elsewhere.waitFor("200 OK", timeout: .seconds(2)), "another IP is not affected")
            // WebSockets are not HTTP connections: the IP still upgrades.
            let client = try await node.client(localAddress: "127.0.0.21")
            await client.close()
            for socket in open { _ = try await socket.waitForClose(timeout: .milliseconds(1)) }
            let deadline = ContinuousClock.now + .seconds(2)
            while node.node.gatekeeper.httpConnections.count > 1, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            let again = try await RawSocket.connect(port: node.port, localAddress: "127.0.0.21")
            try await again.send(Array(Self.health.utf8))
            #expect(await again.waitFor("200 OK", timeout: .seconds(2)), "a closed connection gives its place back")
        }
    }

    /// An upgrade through NIO's HTTP pipeline (Socket.IO's WebSocket) with frames in the same write: the bytes
    /// after the request reach the WebSocket, not the HTTP guards (which once trapped on them).
    @Test func bytesThatFollowAnUpgradeInTheSameWriteReachTheWebSocket() async throws {
        try await TestNode.with { node in
            let socket = try await RawSocket.connect(port: node.port)
            let upgrade = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            let connect: [UInt8] = [0x81, 0x82, 0, 0, 0, 0] + Array("40".utf8)
            try await socket.send(Array(upgrade.utf8) + connect)
            #expect(await socket.waitFor("101 Switching Protocols", timeout: .seconds(3)))
            #expect(await socket.waitFor("\"sid\"", timeout: .seconds(3)), "the CONNECT that came with the upgrade is answered")
            let health = try await node.request("GET", "/api/v1/websocket/health")
            #expect(health.status == 200)
        }
    }

    /// Issue 34, defect 8: invalid bearer tokens on the admin API count toward blocking the IP, and a blocked
    /// IP is refused before its token costs a signature check.
    @Test func adminAPIAuthFailuresBlockTheIP() async throws {
        try await TestNode.with({ $0.blockAfterFailures = 3 }) { node in
            func stats(token: String) async throws -> String {
                let socket = try await RawSocket.connect(port: node.port, localAddress: "127.0.0.51")
                try await socket.send(Array(
                    "GET /api/v1/websocket/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(token)\r\nConnection: close\r\n\r\n".utf8))
                _ = await socket.waitFor("\r\n\r\n", timeout: .seconds(3))
                return String(socket.received.prefix(12))
            }
            for _ in 0..<3 { #expect(try await stats(token: "junk") == "HTTP/1.1 401") }
            #expect(try await stats(token: try await node.token("ops", role: .admin)) == "HTTP/1.1 403", "blocked, even with a good token")
            let upgrade = try #require(try await node.upgrade(localAddress: "127.0.0.51").refusal)
            #expect(upgrade.status == 403 && upgrade.errorCode == "IP_BLOCKED")
            #expect(node.node.statistics.snapshot().authFailures == 3)
        }
    }

    /// Found by `scripts/hostile` (oversized-and-malformed-frames): every refused WebSocket kept its channel,
    /// buffers and all, for the 5 s close grace after it had closed (3,000 refused connections: +117 MiB). The
    /// grace timer now holds the channel weakly and goes when the channel closes.
    @Test func aClosedConnectionIsFreedAtOnceNotAfterItsCloseGrace() throws {
        let loop = EmbeddedEventLoop()
        weak var untimed: EmbeddedChannel?
        weak var timed: EmbeddedChannel?
        do {
            // Closed, not finished: `finish()` would run the pending timer and hide what it holds.
            let plain = EmbeddedChannel(loop: loop)
            untimed = plain
            try plain.close().wait()
            let channel = EmbeddedChannel(loop: loop)
            timed = channel
            channel.close(after: .seconds(5))
            try channel.close().wait()
            loop.run()
        }
        #expect(untimed == nil, "a closed embedded channel is freed (the check can see it)")
        #expect(timed == nil, "the close grace's timer no longer holds a closed channel")
        try loop.syncShutdownGracefully()
    }
}
