import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import NIOCore
import RedisTestSupport
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// SPEC §14 against `examples/platform-backend/backend.py`, run as a process of its own with a Redis of its own:
/// sessions behind a signed cookie answer the connect proxy, trade-room membership the subscribe proxy, and the
/// backend's room changes reach the connections through the subscribe API.
@Suite struct PlatformIntegrationTests {
    /// The trade rooms: members only, whatever a user's role (`grant: required`), decided by the backend.
    static let rooms = Namespace(name: "room", minRole: .user, topic: .required, history: 20, grantRequired: true, subscribeProxy: true)

    /// The example backend as a child process, listening on `port`.
    struct Backend {
        let port: Int
        let process: ChildProcess

        var url: String { "http://127.0.0.1:\(port)" }

        /// `POST path` with a JSON body; the status and the JSON answer.
        func post(_ path: String, _ body: [String: Any], method: String = "POST") async throws -> (status: Int, json: [String: Any]) {
            var request = URLRequest(url: try #require(URL(string: url + path)))
            request.httpMethod = method
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = try JSONSerialization.data(withJSONObject: body)
            let (data, response) = try await URLSession.shared.data(for: request)
            let status = (response as? HTTPURLResponse)?.statusCode ?? 0
            return (status, (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:])
        }

        /// Names the node the backend calls for its subscribe API.
        func call(_ node: TestNode) async throws {
            let named = try await post("/control/switchboard", [
                "url": "http://127.0.0.1:\(node.port)", "adminToken": try await node.token("platform", role: .admin),
            ])
            #expect(named.status == 200)
        }

        /// A login session's cookie (`sid=...`).
        func login(_ userId: String, role: String = "user", tier: String? = nil) async throws -> String {
            var body: [String: Any] = ["userId": userId, "role": role]
            if let tier { body["tier"] = tier }
            return try #require(try await post("/login", body).json["cookie"] as? String)
        }
    }

    /// A node whose connect and subscribe proxies are the example backend, which calls the node back.
    static func withPlatform(
        _ configure: @escaping (inout Settings) -> Void = { _ in }, _ body: (TestNode, Backend) async throws -> Void
    ) async throws {
        try await RedisServer.with { redis in
            try await withBackend(redis: redis) { backend in
                try await TestNode.with(platformSettings(backendPort: backend.port, configure)) { node in
                    try await backend.call(node)
                    try await body(node, backend)
                }
            }
        }
    }

    /// Two cluster nodes on one Redis (the platform's keys beside the cluster's), both asking the example backend,
    /// which calls the first back.
    static func withPlatformCluster(_ body: ([TestNode], Backend) async throws -> Void) async throws {
        try await RedisServer.with { redis in
            try await withBackend(redis: redis) { backend in
                try await ClusterTests.withNodes(2, on: redis, platformSettings(backendPort: backend.port)) { nodes in
                    try await backend.call(nodes[0])
                    try await body(nodes, backend)
                }
            }
        }
    }

    static func platformSettings(backendPort: Int, _ configure: @escaping (inout Settings) -> Void = { _ in }) -> (inout Settings) -> Void {
        { settings in
            settings.namespaces += [rooms]
            settings.connectProxyURL = "http://127.0.0.1:\(backendPort)/switchboard/connect"
            settings.subscribeProxyURL = "http://127.0.0.1:\(backendPort)/switchboard/subscribe"
            // Room for a loaded CI machine: the backend opens a Redis connection per lookup.
            settings.proxyTimeout = .seconds(2)
            configure(&settings)
        }
    }

    /// Runs the example backend for `body`, then stops it. It binds a port of the kernel's choosing and prints it
    /// (a port picked here and bound later could be another test's by then).
    static func withBackend(redis: RedisServer, _ body: (Backend) async throws -> Void) async throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "../../examples/platform-backend/backend.py").standardized.path
        let output = Pipe()
        let process = try ChildProcess(
            executable: "/usr/bin/python3",
            arguments: [script, "--port", "0", "--redis", "127.0.0.1:\(redis.port)", "--secret", "cookie-signing-key"],
            standardOutput: .pipe(output))
        defer {
            process.send(SIGTERM)
            _ = process.waitUntilExit(within: .seconds(5))
        }
        try? output.fileHandleForWriting.close()
        let line = try await onOwnThread { () -> String in
            var text = ""
            while !text.contains("\n") {
                let data = output.fileHandleForReading.availableData
                if data.isEmpty { break }
                text += String(decoding: data, as: UTF8.self)
            }
            return text
        }
        let port = try #require(line.split(separator: ":").last.flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }, "\(line)")
        try await body(Backend(port: port, process: process))
    }

    @Test func removingAMemberUnsubscribesTheirConnectionsOnBothNodesWithinASecond() async throws {
        try await Self.withPlatformCluster { nodes, backend in
            for node in nodes {
                try await eventually("node \(node.node.settings.nodeId) knows its peer") { await node.node.cluster?.peers().count == 1 }
            }
            let cookie = try await backend.login("roaming")
            _ = try await backend.post("/rooms/5/members", ["userId": "roaming"])
            var clients: [TestClient] = []
            for node in nodes {
                let client = try await Self.client(of: node, cookie: cookie)
                try await client.subscribe("room:5")
                clients.append(client)
            }
            let started = ContinuousClock.now
            let removed = try await backend.post("/rooms/5/members/roaming", [:], method: "DELETE")
            #expect(removed.json["connections"] as? Int == 2, "\(removed.json)")
            for client in clients {
                let unsubscribed = try await client.next(timeout: .seconds(1))
                #expect(unsubscribed["type"] as? String == "unsubscribed" && unsubscribed["reason"] as? String == "removed from room 5")
            }
            #expect(ContinuousClock.now - started < .seconds(1))
            // Added again: subscribed again on both.
            let readded = try await backend.post("/rooms/5/members", ["userId": "roaming"])
            #expect(readded.json["connections"] as? Int == 2, "\(readded)")
            for client in clients { #expect(try await client.next()["type"] as? String == "subscribed") }
            for client in clients { await client.close() }
        }
    }

    @Test func aSessionCookieConnectsAsItsUserAndABadOneIs401CountedTowardTheBlock() async throws {
        try await Self.withPlatform({ $0.blockAfterFailures = 3; $0.connectRatePerIP = 1_000 }) { node, backend in
            let cookie = try await backend.login("trader-1", tier: "premium")
            let socket = try await TestWebSocket.open(port: node.port, headers: [("Cookie", cookie)])
            let welcome = try TestClient.parse(try await socket.nextText())
            #expect(welcome["userId"] as? String == "trader-1" && welcome["role"] as? String == "user", "\(welcome)")
            let client = TestClient(socket: socket, welcomeText: "{}")
            // The session's tier admits it to a premium namespace.
            try await client.subscribe("trading_signals:momentum")
            await client.close()
            // No session at all: anonymous (the platform's public data stays public).
            let visitor = try await TestClient.parse(try await TestWebSocket.open(port: node.port, localAddress: "127.0.0.71").nextText())
            #expect(visitor["role"] as? String == "anonymous", "\(visitor)")
            // An unknown or forged session: 401, and three of them block the IP.
            for forged in ["sid=nope.nope", "sid=\(cookie.dropFirst(4).prefix(32)).0000", "sid=."] {
                let refusal = try #require(try await node.upgrade(headers: [("Cookie", forged)], localAddress: "127.0.0.71").refusal)
                #expect(refusal.status == 401 && refusal.errorCode == "UNAUTHORIZED", "\(forged): \(refusal.body)")
            }
            try await eventually("the IP is blocked") {
                try await node.upgrade(headers: [("Cookie", cookie)], localAddress: "127.0.0.71").refusal?.errorCode == "IP_BLOCKED"
            }
        }
    }

    @Test func aBackendDownOrSlowerThanTheTimeoutIs503AndNotCounted() async throws {
        try await Self.withPlatform({ $0.blockAfterFailures = 2; $0.connectRatePerIP = 1_000; $0.proxyTimeout = .milliseconds(500) }) { node, backend in
            let cookie = try await backend.login("trader-2")
            _ = try await backend.post("/control/delay", ["ms": 4_000])
            for _ in 0..<3 {
                let started = ContinuousClock.now
                let refusal = try #require(try await node.upgrade(headers: [("Cookie", cookie)], localAddress: "127.0.0.72").refusal)
                #expect(refusal.status == 503 && refusal.errorCode == "UNAVAILABLE", "\(refusal.body)")
                #expect(ContinuousClock.now - started < .seconds(3), "refused at the 500 ms timeout, not after the backend's 4 s")
            }
            _ = try await backend.post("/control/delay", ["ms": 0])
            // Not counted toward the block: the same IP connects once the backend answers.
            #expect(try await node.upgrade(headers: [("Cookie", cookie)], localAddress: "127.0.0.72").isUpgraded)
            backend.process.send(SIGKILL)
            _ = backend.process.waitUntilExit(within: .seconds(5))
            let down = try #require(try await node.upgrade(headers: [("Cookie", cookie)], localAddress: "127.0.0.72").refusal)
            #expect(down.status == 503 && down.errorCode == "UNAVAILABLE", "\(down.body)")
            #expect(try await node.upgrade(localAddress: "127.0.0.72").refusal?.errorCode != "IP_BLOCKED")
        }
    }

    @Test func roomMembersSubscribeOthersAreForbiddenAndTheBackendMovesThemInAndOut() async throws {
        try await Self.withPlatform { node, backend in
            _ = try await backend.post("/rooms/42/members", ["userId": "member"])
            let member = try await Self.client(of: node, cookie: try await backend.login("member"))
            let outsider = try await Self.client(of: node, cookie: try await backend.login("outsider"))
            try await member.subscribe("room:42")
            let refused = try await outsider.request(["type": "subscribe", "channel": "room:42", "id": 1])
            #expect(refused["type"] as? String == "error" && refused["code"] as? String == "FORBIDDEN", "\(refused)")
            // The backend adds the outsider: their connection is subscribed at once (the server-side subscribe).
            let added = try await backend.post("/rooms/42/members", ["userId": "outsider"])
            #expect(added.json["connections"] as? Int == 1, "\(added.json)")
            let subscribed = try await outsider.next()
            #expect(subscribed["type"] as? String == "subscribed" && subscribed["channel"] as? String == "room:42")
            _ = try await node.node.publisher.publish(Publication(channel: "room:42", event: "trade", data: #"{"px":1}"#))
            for client in [member, outsider] { #expect(try await client.next()["event"] as? String == "trade") }
            // Removed: unsubscribed with the reason within a second.
            let removed = try await backend.post("/rooms/42/members/member", [:], method: "DELETE")
            #expect(removed.json["connections"] as? Int == 1)
            let unsubscribed = try await member.next(timeout: .seconds(1))
            #expect(unsubscribed["type"] as? String == "unsubscribed" && unsubscribed["reason"] as? String == "removed from room 42")
            await member.close()
            await outsider.close()
        }
    }

    @Test func aTokensChannelsGrantThoseRoomsAndNoOthers() async throws {
        try await Self.withPlatform { node, _ in
            let client = try await node.client(token: try await node.token("granted", channels: ["room:7", "trading_signals:*"]))
            try await client.subscribe("room:7")
            try await client.subscribe("trading_signals:momentum")
            // room:8 is not granted, and the backend (asked) has no such member.
            let refused = try await client.request(["type": "subscribe", "channel": "room:8", "id": 2])
            #expect(refused["code"] as? String == "FORBIDDEN", "\(refused)")
            await client.close()
        }
    }

    /// SPEC §13 with the proxies: clients that leave while the backend holds its answer leave nothing behind. The
    /// interleaving is forced: the backend answers 700 ms late, and every client has closed long before.
    @Test func clientsThatLeaveWhileTheBackendIsAskedLeaveNothing() async throws {
        try await Self.withPlatform({ $0.maxConnectionsPerUser = 3; $0.connectRatePerIP = 1_000 }) { node, backend in
            let cookie = try await backend.login("leaver")
            _ = try await backend.post("/rooms/9/members", ["userId": "leaver"])
            _ = try await backend.post("/control/delay", ["ms": 700])
            // Upgrades whose connect-proxy call is pending when the client goes.
            for _ in 0..<10 {
                let socket = try await RawSocket.connect(port: node.port)
                try await socket.send(Array(DirectUpgradeTests.request(extra: "Cookie: \(cookie)\r\n").utf8))
                await socket.close()
            }
            // Socket.IO CONNECTs likewise.
            for _ in 0..<5 {
                let socket = try await TestWebSocket.open(port: node.port, path: "/socket.io/?EIO=4&transport=websocket", headers: [("Cookie", cookie)])
                _ = try await SocketIOFanoutTests.nextPacket(socket)
                try await socket.send("40")
                await socket.close()
            }
            _ = try await backend.post("/control/delay", ["ms": 0])
            // A subscribe-proxy call pending when the client goes.
            let subscriber = try await Self.client(of: node, cookie: cookie)
            _ = try await backend.post("/control/delay", ["ms": 700])
            try await subscriber.send(["type": "subscribe", "channel": "room:9", "id": 1])
            await subscriber.close()
            try await Task.sleep(for: .milliseconds(1_500))
            #expect(node.node.connections.count == 0)
            #expect(node.node.gatekeeper.pools.snapshot.total == 0, "every pool slot given back")
            #expect(node.node.hub.channelSummaries().allSatisfy { $0.subscribers == 0 }, "\(node.node.hub.channelSummaries())")
            // The user's pool of 3 is whole.
            _ = try await backend.post("/control/delay", ["ms": 0])
            var clients: [TestClient] = []
            for _ in 0..<3 { clients.append(try await Self.client(of: node, cookie: cookie)) }
            #expect(clients.allSatisfy { $0.welcome["userId"] as? String == "leaver" })
            for client in clients { await client.close() }
        }
    }

    @Test func anInBandAuthWithThePlatformsDataBecomesItsUser() async throws {
        try await Self.withPlatform({ $0.blockAfterFailures = 2; $0.connectRatePerIP = 1_000; $0.proxyTimeout = .seconds(1) }) { node, backend in
            let cookie = try await backend.login("in-band", tier: "premium")
            // A client without the cookie: anonymous, then `auth` with the platform's credentials as `data`.
            let client = try await node.client(localAddress: "127.0.0.73")
            let forged = try await client.request(["type": "auth", "data": ["sid": "forged.0000"], "id": 1])
            #expect(forged["type"] as? String == "error" && forged["code"] as? String == "UNAUTHORIZED", "\(forged)")
            let authenticated = try await client.request(["type": "auth", "data": ["sid": String(cookie.dropFirst(4))], "id": 2])
            #expect(authenticated["type"] as? String == "authenticated" && authenticated["userId"] as? String == "in-band", "\(authenticated)")
            try await client.subscribe("trading_signals:momentum")
            // The backend down: UNAVAILABLE, and not counted (two counted failures would block the IP).
            _ = try await backend.post("/control/delay", ["ms": 4_000])
            for id in 3...4 {
                let unavailable = try await client.request(["type": "auth", "data": ["sid": "x.y"], "id": id])
                #expect(unavailable["code"] as? String == "UNAVAILABLE", "\(unavailable)")
            }
            #expect(try await client.request(["type": "ping", "id": 5])["type"] as? String == "pong", "still open: not blocked")
            await client.close()
        }
    }

    @Test func aSocketIOClientConnectsByTheCookieOfItsHandshakeOrByItsAuthObject() async throws {
        try await Self.withPlatform { node, backend in
            let cookie = try await backend.login("sio-user", tier: "premium")
            // The browser's cookie, sent with the Engine.IO handshake; the CONNECT carries no token.
            let byCookie = try await Self.socketIOConnect(node, headers: [("Cookie", cookie)], connect: "40")
            #expect(byCookie.answer.hasPrefix("40{"), "\(byCookie.answer)")
            #expect(try await Self.userId(of: byCookie.answer, on: node) == "sio-user")
            // No cookie: the CONNECT's auth object is the proxy's `data`.
            let byData = try await Self.socketIOConnect(node, headers: [], connect: #"40{"sid":"\#(cookie.dropFirst(4))"}"#)
            #expect(try await Self.userId(of: byData.answer, on: node) == "sio-user", "\(byData.answer)")
            // A forged one: CONNECT_ERROR.
            let forged = try await Self.socketIOConnect(node, headers: [], connect: #"40{"sid":"forged.0000"}"#)
            #expect(forged.answer.hasPrefix("44{"), "\(forged.answer)")
            for socket in [byCookie.socket, byData.socket, forged.socket] { await socket.close() }
        }
    }

    /// A Socket.IO session over the WebSocket transport, opened with `headers`, that sends `connect`: its answer.
    static func socketIOConnect(
        _ node: TestNode, headers: [(String, String)], connect: String
    ) async throws -> (socket: TestWebSocket, answer: String) {
        let socket = try await TestWebSocket.open(port: node.port, path: "/socket.io/?EIO=4&transport=websocket", headers: headers)
        #expect(try await SocketIOFanoutTests.nextPacket(socket).hasPrefix("0{"))
        try await socket.send(connect)
        return (socket, try await SocketIOFanoutTests.nextPacket(socket))
    }

    /// The user of the session a CONNECT answer (`40{"sid":…}`) names.
    static func userId(of answer: String, on node: TestNode) async throws -> String? {
        let sid = try #require(try TestClient.parse(String(answer.dropFirst(2)))["sid"] as? String)
        return try await node.node.connections.connection(id: sid)?.describe().userId
    }

    static func client(of node: TestNode, cookie: String) async throws -> TestClient {
        let socket = try await TestWebSocket.open(port: node.port, headers: [("Cookie", cookie)])
        let welcome = try await socket.nextText()
        return TestClient(socket: socket, welcomeText: welcome)
    }
}
