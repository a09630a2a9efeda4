import Foundation
import NIOCore
import NIOHTTP1
import RedisTestSupport
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// SPEC §3's upgrade checks, their order, statuses and JSON bodies, and the pool limits.
@Suite struct UpgradeTests {
    /// `tcp-nodelay` (default true) decides whether upgraded sockets send small frames at once.
    @Test(arguments: [true, false])
    func webSocketSocketsFollowTheTCPNoDelaySetting(noDelay: Bool) async throws {
        try await TestNode.with({ $0.tcpNoDelay = noDelay }) { node in
            let client = try await node.client()
            let connection = try #require(node.node.connections.connection(id: client.welcome["connectionId"] as? String ?? "") as? WebSocketConnection)
            let option = try await connection.channel.getOption(ChannelOptions.tcpOption(.tcp_nodelay)).get()
            #expect((option != 0) == noDelay)
            try await client.subscribe("system_status")
            _ = try await node.node.publisher.publish(Publication(channel: "system_status", event: "e", data: "1"))
            #expect(try await client.next()["seq"] as? Int == 1)
            await client.close()
        }
    }

    /// A reconnect storm's upgrades (no token, or one verified lately) are decided where they are read: no
    /// future, task or thread hop. Only a token seen for the first time waits for its verification.
    @Test func upgradesWithoutATokenOrWithARememberedOneAreDecidedAtOnce() async throws {
        try await TestNode.with { node in
            let admission = UpgradeAdmission(node: node.node)
            let peer = try SocketAddress(ipAddress: "127.0.0.1", port: 40_000)
            func upgrade(_ uri: String) -> HTTPRequestHead {
                var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: uri)
                head.headers.add(name: "Sec-WebSocket-Key", value: "dGhlIHNhbXBsZSBub25jZQ==")
                head.headers.add(name: "Sec-WebSocket-Version", value: "13")
                return head
            }
            func admitted(_ outcome: UpgradeAdmission.Outcome) async throws -> (decided: Bool, AdmittedUpgrade) {
                switch outcome {
                case .decided(let result): (true, try result.get())
                case .pending(let future): (false, try await future.get())
                }
            }
            let anonymous = try await admitted(admission.admit(upgrade("/ws"), peer: peer, on: node.eventLoop))
            #expect(anonymous.decided)
            let token = try await node.token("alice")
            let first = try await admitted(admission.admit(upgrade("/ws?token=\(token)"), peer: peer, on: node.eventLoop))
            #expect(!first.decided, "a token seen for the first time is verified off the loop")
            let again = try await admitted(admission.admit(upgrade("/ws?token=\(token)"), peer: peer, on: node.eventLoop))
            #expect(again.decided)
            #expect(again.1.identity.userId == "alice")
            guard case .decided(.failure(let refusal)) = admission.admit(upgrade("/elsewhere"), peer: peer, on: node.eventLoop) else {
                Issue.record("a refusal by the first checks is decided too")
                return
            }
            #expect(refusal.code == .notFound)
            for upgrade in [anonymous.1, first.1, again.1] { upgrade.reservation.release() }
        }
    }

    @Test func blockedIPIsRefusedWith403() async throws {
        try await TestNode.with { node in
            node.node.gatekeeper.blockList.block("127.0.0.1", for: .seconds(60))
            let refusal = try #require(try await node.upgrade().refusal)
            #expect(refusal.status == 403)
            #expect(refusal.errorCode == "IP_BLOCKED")
            #expect(refusal.header("Content-Type") == "application/json")
        }
    }

    @Test func blockIsCheckedBeforeOrigin() async throws {
        try await TestNode.with({ $0.allowedOrigins = ["https://app.example"] }) { node in
            node.node.gatekeeper.blockList.block("127.0.0.1", for: .seconds(60))
            let refusal = try #require(try await node.upgrade(headers: [("Origin", "https://evil.example")]).refusal)
            #expect(refusal.errorCode == "IP_BLOCKED")
        }
    }

    @Test func disallowedOriginIsRefusedWith403() async throws {
        try await TestNode.with({ $0.allowedOrigins = ["https://app.example"] }) { node in
            let refusal = try #require(try await node.upgrade(headers: [("Origin", "https://evil.example")]).refusal)
            #expect(refusal.status == 403)
            #expect(refusal.errorCode == "ORIGIN_NOT_ALLOWED")
            let allowed = try await node.upgrade(headers: [("Origin", "https://app.example")])
            #expect(allowed.refusal == nil)
        }
    }

    @Test func connectRateIsLimitedPerIPWith429() async throws {
        try await TestNode.with({ $0.connectRatePerIP = 2 }) { node in
            for _ in 0..<2 { #expect(try await node.upgrade().isUpgraded) }
            let refusal = try #require(try await node.upgrade().refusal)
            #expect(refusal.status == 429)
            #expect(refusal.errorCode == "RATE_LIMITED")
            // Another IP has its own budget.
            #expect(try await node.upgrade(localAddress: "127.0.0.2").isUpgraded)
        }
    }

    @Test func invalidTokenIsRefusedWith401() async throws {
        try await TestNode.with { node in
            let refusal = try #require(try await node.upgrade(path: "/ws?token=garbage").refusal)
            #expect(refusal.status == 401)
            #expect(refusal.errorCode == "UNAUTHORIZED")
            let header = try #require(try await node.upgrade(headers: [("Authorization", "Bearer garbage")]).refusal)
            #expect(header.status == 401)
        }
    }

    @Test func rateLimitIsCheckedBeforeToken() async throws {
        try await TestNode.with({ $0.connectRatePerIP = 1 }) { node in
            _ = try await node.upgrade(path: "/ws?token=garbage")
            let refusal = try #require(try await node.upgrade(path: "/ws?token=garbage").refusal)
            #expect(refusal.errorCode == "RATE_LIMITED")
        }
    }

    @Test func fullGlobalPoolIsRefusedWith503() async throws {
        try await TestNode.with({ $0.maxConnections = 2 }) { node in
            let first = try await node.client()
            let second = try await node.client(localAddress: "127.0.0.2")
            let refusal = try #require(try await node.upgrade(localAddress: "127.0.0.3").refusal)
            #expect(refusal.status == 503)
            #expect(refusal.errorCode == "CONNECTION_LIMIT")
            await first.close()
            await second.close()
        }
    }

    @Test func fullPerIPPoolIsRefusedWith429() async throws {
        try await TestNode.with({ $0.maxConnectionsPerIP = 2 }) { node in
            let first = try await node.client()
            let second = try await node.client()
            let refusal = try #require(try await node.upgrade().refusal)
            #expect(refusal.status == 429)
            #expect(refusal.errorCode == "CONNECTION_LIMIT")
            #expect(try await node.upgrade(localAddress: "127.0.0.2").isUpgraded)
            await first.close()
            await second.close()
        }
    }

    @Test func fullPerUserPoolIsRefusedWith429() async throws {
        try await TestNode.with({ $0.maxConnectionsPerUser = 1 }) { node in
            let token = try await node.token("alice")
            let first = try await node.client(token: token)
            let refusal = try #require(try await node.upgrade(path: "/ws?token=\(token)", localAddress: "127.0.0.2").refusal)
            #expect(refusal.status == 429)
            #expect(refusal.errorCode == "CONNECTION_LIMIT")
            await first.close()
        }
    }

    @Test func closedConnectionsFreeTheirSlots() async throws {
        try await TestNode.with({ $0.maxConnectionsPerIP = 1 }) { node in
            let first = try await node.client()
            await first.close()
            try await waitUntil { node.node.gatekeeper.pools.snapshot.total == 0 }
            let second = try await node.client()
            await second.close()
        }
    }

    @Test func abandonedUpgradesDoNotHoldSlots() async throws {
        try await TestNode.with({ $0.maxConnectionsPerIP = 1 }) { node in
            // Clients that send an upgrade request and vanish (TCP FIN, no close frame) before, during or after
            // the 101: each slot must come back at once, not at the heartbeat timeout.
            let request =
                "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            for round in 0..<20 {
                let socket = try await RawSocket.connect(port: node.port)
                try await socket.send(Array(request.utf8))
                if round % 2 == 1 { try await Task.sleep(for: .milliseconds(5)) }
                _ = try await socket.waitForClose(timeout: .milliseconds(1))
            }
            // A round's request may still be in flight, so the slot is checked by getting in: within seconds,
            // far below the heartbeat timeout that used to free it.
            var admitted: TestClient?
            let deadline = ContinuousClock.now + .seconds(3)
            while admitted == nil && ContinuousClock.now < deadline {
                admitted = try? await node.client()
                if admitted == nil { try await Task.sleep(for: .milliseconds(20)) }
            }
            #expect(admitted != nil, "the slot came back")
            await admitted?.close()
            try await waitUntil { node.node.gatekeeper.pools.snapshot.total == 0 }
        }
    }

    @Test func refusedUpgradeDoesNotHoldASlot() async throws {
        // Refused by the last check, the pools themselves: the global and per-IP pools had room, so a slot
        // counted there before the per-user refusal would be lost to everyone else.
        try await TestNode.with({
            $0.maxConnections = 2
            $0.maxConnectionsPerUser = 1
        }) { node in
            let token = try await node.token("alice")
            let alice = try await node.client(token: token)
            let refusal = try #require(try await node.upgrade(path: "/ws?token=\(token)").refusal)
            #expect(refusal.status == 429 && refusal.errorCode == "CONNECTION_LIMIT")
            #expect(node.node.gatekeeper.pools.snapshot.total == 1, "the refused upgrade holds no slot")
            let other = try await node.client()  // the second global slot is still free
            #expect(node.node.gatekeeper.pools.snapshot.total == 2)
            await other.close()
            await alice.close()
        }
    }

    @Test func listeningSocketUsesTheConfiguredBacklog() async throws {
        try await TestNode.with({ $0.listenBacklog = 1234 }) { node in
            // `ss` shows a listening socket's backlog as its Send-Q.
            let line = try await ChildProcess.output(of: "/usr/bin/env", ["ss", "-Hltn", "sport = :\(node.port)"]).standardOutput
            let fields = line.split(whereSeparator: \.isWhitespace)
            #expect(fields.count >= 3 && fields[2] == "1234", "ss -ltn: \(line)")
        }
    }

    @Test func badHandshakeIsBadRequest() async throws {
        try await TestNode.with { node in
            let response = try await HTTPTestClient.request(
                "GET", "/ws", port: node.port, headers: [("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")])
            #expect(response.status == 400)
            #expect(response.errorCode == "BAD_REQUEST")
        }
    }

    @Test func upgradeOnUnknownPathIsNotFound() async throws {
        try await TestNode.with { node in
            let refusal = try #require(try await node.upgrade(path: "/elsewhere").refusal)
            #expect(refusal.status == 404)
            #expect(refusal.errorCode == "NOT_FOUND")
        }
    }

    @Test func forwardedForIsIgnoredFromUntrustedPeers() async throws {
        try await TestNode.with { node in
            node.node.gatekeeper.blockList.block("203.0.113.9", for: .seconds(60))
            let outcome = try await node.upgrade(headers: [("X-Forwarded-For", "203.0.113.9")])
            #expect(outcome.isUpgraded)
        }
    }

    @Test func forwardedForIsBelievedFromTrustedProxies() async throws {
        try await TestNode.with({ $0.trustedProxies = ["127.0.0.1"] }) { node in
            node.node.gatekeeper.blockList.block("203.0.113.9", for: .seconds(60))
            let refusal = try #require(try await node.upgrade(headers: [("X-Forwarded-For", "203.0.113.9")]).refusal)
            #expect(refusal.errorCode == "IP_BLOCKED")
        }
    }
}

/// Polls `condition` every 10 ms for up to `timeout` (for state with no event to wait on, such as pool counts).
func waitUntil(timeout: Duration = .seconds(5), _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("condition not met within \(timeout)")
            return
        }
        try await Task.sleep(for: .milliseconds(10))
    }
}
