import Foundation
import NIOCore
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// Issue 33's defects of the Engine.IO / Socket.IO transports (SPEC §9, §13), each forced against a live node
/// with raw polling requests and WebSockets, so that the interleaving is the test's, not the scheduler's.
@Suite struct EngineIOTransportTests {
    /// A polling session driven by hand.
    struct Polling {
        let port: Int
        let sid: String

        static func open(_ node: TestNode) async throws -> Polling {
            let handshake = try await HTTPTestClient.request("GET", "/socket.io/?EIO=4&transport=polling", port: node.port)
            #expect(handshake.status == 200, "\(handshake.body)")
            let open = try TestClient.parse(String(handshake.body.dropFirst()))
            return Polling(port: node.port, sid: try #require(open["sid"] as? String))
        }

        var path: String { "/socket.io/?EIO=4&transport=polling&sid=\(sid)" }

        /// One GET: the packets it is answered with (Engine.IO's record separator splits them).
        func get() async throws -> [String] {
            let response = try await HTTPTestClient.request("GET", path, port: port)
            #expect(response.status == 200, "GET: \(response.status) \(response.body)")
            return response.body.split(separator: "\u{1e}").map(String.init)
        }

        func post(_ packets: String...) async throws -> HTTPTestResponse {
            try await HTTPTestClient.request("POST", path, port: port, body: packets.joined(separator: "\u{1e}"))
        }

        /// The WebSocket that probes this session's upgrade, after `2probe` / `3probe`.
        func probe() async throws -> TestWebSocket {
            let socket = try await TestWebSocket.open(port: port, path: "/socket.io/?EIO=4&transport=websocket&sid=\(sid)")
            try await socket.send("2probe")
            #expect(try await SocketIOFanoutTests.nextPacket(socket) == "3probe")
            return socket
        }

        /// A polling session that CONNECTed and subscribed to `system_status` (its ack read).
        static func subscribed(_ node: TestNode) async throws -> Polling {
            let session = try await open(node)
            _ = try await session.connect()
            #expect(try await session.post(#"420["subscribe","system_status"]"#).body == "ok")
            #expect(try await session.get().contains { $0.hasPrefix("430[") })
            return session
        }

        /// CONNECT over polling, answered with the Socket.IO sid.
        func connect() async throws -> String {
            #expect(try await post("40").body == "ok")
            let reply = try await get()
            let connect = try #require(reply.first { $0.hasPrefix("40") })
            return try #require(try TestClient.parse(String(connect.dropFirst(2)))["sid"] as? String)
        }
    }

    static func settings(_ settings: inout Settings) { settings.connectRatePerIP = 10_000 }

    /// Defect 3, the browser's race: a reply produced while the probe, the `noop` and `5` are in flight (here the
    /// CONNECT answer and an ACK, both made after `3probe` and before `5`) arrives exactly once, in order, on the
    /// WebSocket. It used to be written to the WebSocket before the session had switched to it: lost.
    @Test func repliesProducedDuringTheUpgradeArriveOnceInOrder() async throws {
        try await TestNode.with(Self.settings) { node in
            let session = try await Polling.open(node)
            let engine = try #require(node.node.gateway.engineSessions.session(sid: session.sid))
            let held = Task { try await session.get() }
            try await waitUntilOnLoop(engine) { engine.isPollHeld }
            let socket = try await session.probe()
            #expect(try await held.value == ["6"], "polling stops with a noop")
            #expect(try await session.post("40").body == "ok")
            try await waitUntil { node.node.connections.count == 1 }
            #expect(try await session.post(#"421["ping"]"#).body == "ok")
            try await socket.send("5")
            let first = try await SocketIOFanoutTests.nextPacket(socket)
            let second = try await SocketIOFanoutTests.nextPacket(socket)
            #expect(first.hasPrefix(#"40{"sid":"#), "the CONNECT answer first: \(first)")
            #expect(second.hasPrefix("431[") && second.contains(#""ok":true"#), "then the ACK: \(second)")
            // Nothing is written twice: a ping round-trip shows what follows.
            try await socket.send(#"422["ping"]"#)
            #expect(try await SocketIOFanoutTests.nextPacket(socket).hasPrefix("432["))
            await socket.close()
        }
    }

    /// One outbound queue per session, bounded in bytes (`outbound-buffer-bytes`, SPEC §5) whatever the transport:
    /// a polling client that stops polling is ended as a slow consumer once what waits for it passes the bound,
    /// and its next GET learns the session is gone.
    @Test func aPollingClientThatStopsPollingIsASlowConsumer() async throws {
        let limit = 16 * 1024
        try await TestNode.with({ Self.settings(&$0); $0.outboundBufferBytes = limit }) { node in
            let session = try await Polling.subscribed(node)
            let engine = try #require(node.node.gateway.engineSessions.session(sid: session.sid))
            let data = String(repeating: "x", count: 1_000)
            for n in 0..<(2 * limit / 1_000) {
                _ = try await node.node.publisher.publish(Publication(channel: "system_status", event: "tick", data: "\"\(n) \(data)\""))
            }
            try await waitUntilOnLoop(engine) { engine.isFinished }
            #expect(node.node.statistics.snapshot().slowConsumerCloses == 1)
            #expect(node.node.gateway.engineSessions.session(sid: session.sid) == nil)
            let next = try await HTTPTestClient.request("GET", session.path, port: node.port)
            #expect(next.status == 400, "\(next.status) \(next.body)")
        }
    }

    /// Defect 8: a probe that closes without `5` used to leave the session answering every GET with `6`, and
    /// deliveries never arrived. Polling resumes, and every packet arrives once.
    @Test func anAbandonedUpgradeReturnsTheSessionToPolling() async throws {
        try await TestNode.with(Self.settings) { node in
            let session = try await Polling.subscribed(node)
            let engine = try #require(node.node.gateway.engineSessions.session(sid: session.sid))
            let socket = try await session.probe()
            await socket.close()
            try await waitUntilOnLoop(engine) { !engine.isProbing }
            for n in 1...3 { _ = try await node.node.publisher.publish(Publication(channel: "system_status", event: "tick", data: "\(n)")) }
            var received: [String] = []
            let deadline = ContinuousClock.now + .seconds(3)
            while received.count < 3 && ContinuousClock.now < deadline {
                received += try await session.get().filter { $0.hasPrefix(#"42["tick""#) }
            }
            #expect(received.count == 3, "\(received)")
            for (index, packet) in received.enumerated() { #expect(packet.contains(#""data":\#(index + 1),"#)) }
        }
    }

    /// `EngineSession.pollAbandoned` used to be called by no one: a held GET whose client went away took the next
    /// packets with it, and the next GET ended the session ("a poll is already pending").
    @Test func aGETWhoseClientLeftLosesNothing() async throws {
        try await TestNode.with(Self.settings) { node in
            let session = try await Polling.subscribed(node)
            let engine = try #require(node.node.gateway.engineSessions.session(sid: session.sid))
            let abandoned = try BlockingSocket(port: node.port)
            try abandoned.send("GET \(session.path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            try await waitUntilOnLoop(engine) { engine.isPollHeld }
            abandoned.reset()
            try await waitUntilOnLoop(engine) { !engine.isPollHeld }
            _ = try await node.node.publisher.publish(Publication(channel: "system_status", event: "tick", data: "1"))
            let next = try await session.get()
            #expect(next.contains { $0.hasPrefix(#"42["tick""#) }, "\(next)")
        }
    }

    /// Defect 4: every client packet counts toward the message rate, those the codec answers itself included.
    @Test func malformedEventsWithAnAckAreRateLimitedLikeAnyMessage() async throws {
        try await TestNode.with({ $0.messageRate = 60; $0.messageBurst = 2 }) { node in
            let socket = try await TestWebSocket.open(port: node.port, path: "/socket.io/?EIO=4&transport=websocket")
            _ = try await SocketIOFanoutTests.nextPacket(socket)
            try await socket.send("40")
            #expect(try await SocketIOFanoutTests.nextPacket(socket).hasPrefix("40"))
            for id in 1...3 { try await socket.send(#"42\#(id)["explode"]"#) }
            var acks: [String] = []
            for _ in 1...3 { acks.append(try await SocketIOFanoutTests.nextPacket(socket)) }
            #expect(acks[0].hasPrefix("431[") && acks[0].contains("BAD_REQUEST"), "\(acks)")
            #expect(acks[2].hasPrefix("433[") && acks[2].contains("RATE_LIMITED"), "the third is over the burst: \(acks)")
            // Far over the rate, the session ends.
            for id in 4...20 { try? await socket.send(#"42\#(id)["explode"]"#) }
            try await waitUntil { node.node.connections.count == 0 }
        }
    }

    /// Defect 4: CONNECTs to other namespaces before the main CONNECT were answered without limit.
    @Test func connectsToOtherNamespacesAreRateLimited() async throws {
        try await TestNode.with({ $0.messageRate = 60; $0.messageBurst = 2 }) { node in
            let socket = try await TestWebSocket.open(port: node.port, path: "/socket.io/?EIO=4&transport=websocket")
            _ = try await SocketIOFanoutTests.nextPacket(socket)
            for _ in 0..<50 { try? await socket.send("40/x,") }
            var refusals = 0
            while let text = try? await socket.nextText(timeout: .milliseconds(500)) {
                if text.hasPrefix("44/x,") { refusals += 1 }
            }
            #expect(refusals == 2, "only the burst is answered")
            #expect(node.node.gateway.engineSessions.count == 0, "far over the rate the session ends")
        }
    }

    /// Defect 5: an IP block reaches sessions opened before it (their CONNECT, polls and upgrade by `sid`).
    @Test func aBlockReachesEveryEngineIOPath() async throws {
        try await TestNode.with(Self.settings) { node in
            let beforeConnect = try await Polling.open(node)
            let beforeUpgrade = try await Polling.open(node)
            _ = node.node.gatekeeper.blockHere("127.0.0.1", for: .seconds(60), reason: "test")
            let connect = try await beforeConnect.post("40")
            #expect(connect.status == 403, "CONNECT after a block: \(connect.status) \(connect.body)")
            let upgrade = try await TestWebSocket.connect(port: node.port, path: "/socket.io/?EIO=4&transport=websocket&sid=\(beforeUpgrade.sid)")
            #expect(upgrade.refusal?.status == 403, "upgrade by sid after a block")
            try await waitUntil { node.node.gateway.engineSessions.count == 0 }
            #expect(node.node.connections.count == 0)
        }
    }

    /// Defect 10: sessions that only did the handshake hold a slot of the per-IP pool and show in stats.
    @Test func handshakeOnlySessionsCountInThePoolsAndStats() async throws {
        try await TestNode.with({ $0.connectRatePerIP = 10_000; $0.maxConnectionsPerIP = 5 }) { node in
            var sessions: [Polling] = []
            for _ in 0..<5 { sessions.append(try await Polling.open(node)) }
            let sixth = try await HTTPTestClient.request("GET", "/socket.io/?EIO=4&transport=polling", port: node.port)
            #expect(sixth.status == 429, "the per-IP pool is full: \(sixth.status) \(sixth.body)")
            let admin = try await node.token("root", role: .admin)
            let stats = try await node.request("GET", "/api/v1/websocket/stats", token: admin)
            let connections = try #require(stats.json["connections"] as? [String: Any])
            #expect(connections["awaitingConnect"] as? Int == 5, "\(connections)")
            _ = try await sessions[0].connect()
            #expect(node.node.gateway.engineSessions.awaitingConnect == 4)
            #expect(node.node.connections.count == 1)
        }
    }
}


/// Polls `condition` on `connection`'s event loop every 10 ms for up to 5 s.
func waitUntilOnLoop(_ connection: EngineConnection, _ condition: @escaping @Sendable () -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(5)
    while try await !connection.eventLoop.submit(condition).get() {
        guard ContinuousClock.now < deadline else {
            Issue.record("condition not met on the session's loop within 5 s")
            return
        }
        try await Task.sleep(for: .milliseconds(10))
    }
}
