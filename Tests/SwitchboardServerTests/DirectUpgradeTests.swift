import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import SwitchboardCore
import Synchronization
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// Plain `/ws` upgrades answered without NIO's HTTP pipeline (``DirectUpgradeHandler``), and everything else
/// still handed to it.
@Suite struct DirectUpgradeTests {
    static let key = "dGhlIHNhbXBsZSBub25jZQ=="

    static func request(_ target: String = "/ws", extra: String = "") -> String {
        "GET \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n\(extra)\r\n"
    }

    private func parse(_ text: String) -> DirectUpgradeRequest.Parse {
        DirectUpgradeRequest.parse(ByteBuffer(string: text).readableBytesView)
    }

    private func parsedHead(_ text: String) -> (uri: String, length: Int)? {
        guard case .upgrade(let head, let length) = parse(text) else { return nil }
        return (head.uri, length)
    }

    @Test func thePlainUpgradeIsRecognisedAndEverythingElseIsNot() {
        let plain = Self.request("/ws?token=abc&subscribe=a,b")
        #expect(parsedHead(plain)?.uri == "/ws?token=abc&subscribe=a,b")
        #expect(parsedHead(plain + "\u{81}\u{80}")?.length == plain.utf8.count, "what follows the head is not part of it")
        #expect(parsedHead(Self.request(extra: "connection: keep-alive, upgrade\r\nupgrade: websocket\r\n")) == nil,
            "a second Upgrade header is the HTTP pipeline's")
        #expect(parsedHead(Self.request().replacingOccurrences(of: "Connection: Upgrade", with: "Connection: keep-alive, Upgrade")) != nil)
        // Header names in any case, values' case and surrounding blanks as HTTP allows, an empty body declared.
        let lower = "GET /ws HTTP/1.1\r\nhost: a\r\nUPGRADE: WebSocket\r\nconnection:\tkeep-alive,upgrade \r\n"
            + "sec-websocket-key: \(Self.key)\r\nContent-Length: 0\r\ncontent-length: 0\r\n\r\n"
        #expect(parsedHead(lower)?.length == lower.utf8.count)
        if case .upgrade(let head, _) = parse(lower) {
            #expect(head.headers["Sec-WebSocket-Key"] == [Self.key])
            #expect(head.headers["connection"] == ["keep-alive,upgrade"], "values are kept without their surrounding blanks")
        }
        for refused in [
            Self.request().replacingOccurrences(of: "Connection: Upgrade", with: "Connection: upgrades"),
            Self.request().replacingOccurrences(of: "Upgrade: websocket", with: "Upgrade: websocket2"),
            Self.request(extra: "Content-Length: 00\r\n"), Self.request(extra: "transfer-encoding: identity\r\n"),
            Self.request(extra: "X-Empty-Name\r\n"), Self.request(extra: ": no name\r\n"), Self.request(extra: "X-CR: a\rb\r\n"),
            "GET /ws  HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        ] {
            #expect(parsedHead(refused) == nil, "\(refused)")
        }
        // Partial heads wait; anything else, or unusual, goes to NIO's parser.
        #expect(parse("GET /w") == .needsMore)
        // Searching on from where an earlier read stopped finds an end of head split across reads.
        let whole = Self.request()
        #expect(DirectUpgradeRequest.parse(ByteBuffer(string: whole).readableBytesView, searched: whole.utf8.count - 2) != .needsMore)
        #expect(parse(String(Self.request().dropLast(2))) == .needsMore)
        for other in [
            "POST /api/v1/websocket/broadcast HTTP/1.1\r\n", "GET /wsx HTTP/1.1\r\n", "GET /socket.io/?EIO=4 HTTP/1.1\r\n",
            "GET /ws HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            Self.request().replacingOccurrences(of: "Upgrade: websocket\r\n", with: ""),
            Self.request(extra: "Content-Length: 5\r\n"), Self.request(extra: "Transfer-Encoding: chunked\r\n"),
            Self.request(extra: "X-Note: caf\u{e9}\r\n"), Self.request(extra: "Bad Name: x\r\n"), Self.request(extra: " folded\r\n"),
            Self.request(extra: "X-Pad: " + String(repeating: "x", count: DirectUpgradeRequest.maxHeadBytes) + "\r\n"),
        ] {
            #expect(parse(other) == .otherwise, "\(other.prefix(60))")
        }
        #expect(parse(String(repeating: "GET /ws?", count: 1) + String(repeating: "a", count: DirectUpgradeRequest.maxHeadBytes)) == .otherwise)
    }

    /// RFC 6455 §1.3's example: the accept value the client checks, in the direct 101.
    @Test func theAcceptValueIsTheRFCsExample() {
        #expect(WebSocketHandshake.accept(forKey: Self.key) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        let response = DirectUpgradeHandler.switchingProtocols(key: Self.key, extensions: nil)
        #expect(String(buffer: response).contains("\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"))
    }

    /// Mutations of a real head and random bytes: the parser answers every one (a bad index would trap).
    @Test func mutatedAndRandomHeadsNeverTrap() {
        var random = MutationGenerator(state: 0x5EED)
        let base = Array(Self.request("/ws?token=abc", extra: "Origin: https://a.example\r\n").utf8)
        let interesting: [UInt8] = [0x0D, 0x0A, 0x3A, 0x20, 0x09, 0x00, 0x7F, 0x80, 0xFF, 0x3F]
        var upgrades = 0
        for round in 0..<5_000 {
            var bytes = base
            if round % 10 == 9 {
                bytes = (0..<Int(random.next() % 200)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                bytes.insert(contentsOf: Array("GET /ws ".utf8), at: 0)
            } else {
                for _ in 0..<(1 + Int(random.next() % 4)) {
                    let at = Int(random.next() % UInt64(bytes.count))
                    switch random.next() % 4 {
                    case 0: bytes[at] = interesting[Int(random.next() % UInt64(interesting.count))]
                    case 1: bytes.remove(at: at)
                    case 2: bytes.insert(interesting[Int(random.next() % UInt64(interesting.count))], at: at)
                    default: bytes = Array(bytes.prefix(at))
                    }
                    if bytes.isEmpty { bytes = [0x47] }
                }
            }
            if case .upgrade(_, let length) = DirectUpgradeRequest.parse(ByteBuffer(bytes: bytes).readableBytesView) {
                #expect(length <= bytes.count)
                upgrades += 1
            }
        }
        #expect(upgrades > 0, "some mutations keep a valid head")
    }

    @Test func aPlainUpgradeIsAnsweredDirectlyEvenByteByByteWithEarlyFrames() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            #expect(client.welcome["type"] as? String == "welcome")
            #expect(node.node.gateway.directUpgrades.load(ordering: .relaxed) == 1)
            // One byte per write, then a masked ping sent before the 101 could arrive: answered with a pong.
            let raw = try await ByteCollector.connect(port: node.port)
            for byte in Array(Self.request().utf8) { try await raw.send([byte]) }
            try await raw.send([0x89, 0x82, 0, 0, 0, 0, 0x68, 0x69])
            _ = try await raw.waitFor([0x8A, 0x02, 0x68, 0x69])
            // The pong may come before `welcome` (control frames interleave), both after the 101.
            let seen = try await raw.waitFor(Array(#""type":"welcome""#.utf8))
            #expect(seen.starts(with: Array("HTTP/1.1 101 Switching Protocols\r\n".utf8)))
            #expect(node.node.gateway.directUpgrades.load(ordering: .relaxed) == 2)
            await raw.close()
            await client.close()
        }
    }

    /// A direct upgrade's 101 leads `welcome` and the `?subscribe=` replies in one write straight to the socket:
    /// NIO is handed none of the connection's bytes.
    @Test func aDirectUpgradesFirstWriteGoesStraightToTheSocket() async throws {
        try await TestNode.with { node in
            let client = try await node.client(query: "subscribe=system_status")
            #expect(try await client.next()["type"] as? String == "subscribed")
            #expect(node.node.gateway.directUpgrades.load(ordering: .relaxed) == 1)
            let connection = try #require(
                node.node.connections.connection(id: client.welcome["connectionId"] as? String ?? "") as? WebSocketConnection)
            let writes = try await connection.eventLoop.submit { connection.directWrites }.get()
            #expect(writes.enabled && writes.throughNIO == 0, "\(writes)")
            await client.close()
        }
    }

    @Test func unusualUpgradesGoThroughTheHTTPPipelineAndRefusalsKeepTheirStatusAndBody() async throws {
        try await TestNode.with { node in
            let unusual = try await ByteCollector.connect(port: node.port)
            try await unusual.send(Array(Self.request(extra: "X-Note: caf\u{e9}\r\n").utf8))
            let accepted = String(decoding: try await unusual.waitFor(Array("welcome".utf8)), as: UTF8.self)
            #expect(accepted.hasPrefix("HTTP/1.1 101 Switching Protocols\r\n"))
            #expect(node.node.gateway.directUpgrades.load(ordering: .relaxed) == 0, "the HTTP pipeline answered it")
            await unusual.close()
            // The same refusal either way: SPEC §3's status and JSON body, then the connection closes.
            for extra in ["", "X-Note: caf\u{e9}\r\n"] {
                let refused = try await ByteCollector.connect(port: node.port)
                try await refused.send(Array(Self.request("/ws?token=not-a-jwt", extra: extra).utf8))
                let text = String(decoding: try await refused.waitForClose(), as: UTF8.self)
                #expect(text.hasPrefix("HTTP/1.1 401 Unauthorized\r\n"), "\(text)")
                #expect(text.lowercased().contains("content-type: application/json"))
                #expect(text.contains(#""code":"UNAUTHORIZED""#))
            }
            #expect(node.node.gateway.directUpgrades.load(ordering: .relaxed) == 1)
        }
    }

    /// A burst of upgrade requests read in one poll of a loop (a reconnect storm) is answered a turn at a time
    /// (``UpgradeQueue``) between the loop's other work. Answered where they were read, all 60 came before an
    /// open WebSocket's `pong`, and all 60 were admitted before an API request read in the same poll was served.
    @Test func aBurstOfUpgradesTakesTurnsWithTheLoopsOpenConnections() async throws {
        let burst = 60
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)  // every connection on one loop
        try await TestNode.with({
            $0.maxConnectionsPerIP = 1_000
            $0.connectRatePerIP = 100_000
            $0.requestTimeout = .milliseconds(120_000)  // the burst waits unanswered while the loop is held, however slow the suite
        }, eventLoopGroup: group) { node in
            let patience = Duration.seconds(30)
            let welcome = Array(#""type":"welcome""#.utf8)
            // One client thread reads every connection, so arrivals come in the order the node wrote them (read
            // on two threads, a starved suite saw 26 upgrades "before" a pong the node wrote before them).
            let clientLoop = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            defer { clientLoop.shutdownGracefully { _ in } }
            let open = try await ByteCollector.connect(port: node.port, group: clientLoop)
            try await open.send(Array(Self.request().utf8))
            _ = try await open.waitFor(welcome)
            // A keep-alive API connection, its first request answered.
            let api = try await ByteCollector.connect(port: node.port, group: clientLoop)
            try await api.send(Array("GET /api/v1/websocket/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8))
            _ = try await api.waitFor(Array("\"status\"".utf8))
            let admin = try await node.token("ops", role: .admin)
            var waiting: [ByteCollector] = []
            for _ in 0..<burst { waiting.append(try await ByteCollector.connect(port: node.port, group: clientLoop)) }
            // Every connection of the burst adopted by the loop and waiting for its request (the open WebSocket and
            // the API connection too).
            let adopted = ContinuousClock.now + patience
            while node.openConnections.count < burst + 2 && ContinuousClock.now < adopted {
                try await node.eventLoop.submit {}.get()
            }
            try #require(node.openConnections.count >= burst + 2)
            // Hold the loop until every request, then the open connection's `ping` and the API request, have
            // arrived (the writes return once the kernel has the bytes): its next poll reads them all at once.
            let (held, holding) = AsyncStream.makeStream(of: Void.self)
            let release = DispatchSemaphore(value: 0)
            node.eventLoop.execute {
                holding.yield()
                _ = release.wait(timeout: .now() + 60)
            }
            for await _ in held { break }
            for client in waiting { try await client.send(Array(Self.request().utf8)) }
            let ping = Array(#"{"type":"ping"}"#.utf8)
            try await open.send([0x81, 0x80 | UInt8(ping.count), 0, 0, 0, 0] + ping)  // masked with a zero key
            try await api.send(Array("GET /api/v1/websocket/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(admin)\r\n\r\n".utf8))
            release.signal()

            let pong = Array(#""type":"pong""#.utf8)
            _ = try await open.waitFor(pong, within: patience)
            let stats = String(decoding: try await api.waitFor(Array("\"slowConsumerDisconnects\"".utf8), within: patience), as: UTF8.self)
            for client in waiting { _ = try await client.waitFor(welcome, within: patience) }
            let pongAt = try #require(open.arrival(of: pong))
            let answeredBeforePong = waiting.filter { ($0.arrival(of: Array("HTTP/1.1 101".utf8)) ?? pongAt) < pongAt }.count
            #expect(answeredBeforePong < burst / 4, "\(answeredBeforePong) of \(burst) upgrades were answered before the pong")
            // `connections.accepted` as the stats request saw it: the open WebSocket and the burst's first turns.
            let accepted = stats.firstRange(of: #/"accepted":(\d+)/#).flatMap { Int(stats[$0].split(separator: ":")[1]) }
            let admittedBeforeStats = try #require(accepted, "\(stats.suffix(400))") - 1
            #expect(admittedBeforeStats < burst / 2, "\(admittedBeforeStats) of \(burst) upgrades were admitted before the stats request was served")
            await open.close()
            await api.close()
            for client in waiting { await client.close() }
        }
        try await group.shutdownGracefully()
    }

    /// A WebSocket lives in its channel's pipeline: only a connection that serves HTTP (or a refusal written by
    /// the HTTP pipeline) is handed to a Swift task (``GatewayServer``; Hummingbird's server gave one to each).
    @Test func onlyConnectionsServingHTTPGetATask() async throws {
        try await TestNode.with { node in
            var clients: [TestClient] = []
            for _ in 0..<5 { clients.append(try await node.client()) }
            let unusual = try await ByteCollector.connect(port: node.port)
            try await unusual.send(Array(Self.request(extra: "X-Note: caf\u{e9}\r\n").utf8))
            _ = try await unusual.waitFor(Array("welcome".utf8))
            #expect(node.node.gateway.httpConnectionTasks.load(ordering: .relaxed) == 0, "WebSockets hold no task")
            let health = try await node.request("GET", "/api/v1/websocket/health")
            #expect(health.status == 200)
            let refused = try await ByteCollector.connect(port: node.port)
            try await refused.send(Array(Self.request("/ws?token=not-a-jwt", extra: "X-Note: caf\u{e9}\r\n").utf8))
            _ = try await refused.waitForClose()
            #expect(node.node.gateway.httpConnectionTasks.load(ordering: .relaxed) == 2, "one request, one refusal")
            await unusual.close()
            for client in clients { await client.close() }
        }
    }
}

/// A deterministic 64-bit LCG (Knuth's MMIX constants): the mutation test's inputs are the same on every run.
struct MutationGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return state >> 11
    }
}

/// A TCP client that keeps every byte the server sends.
final class ByteCollector: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    private let received = Mutex<[UInt8]>([])
    /// When each read came, with the byte count received by then.
    private let reads = Mutex<[(at: NIODeadline, total: Int)]>([])
    private let closed = Mutex(false)
    private let channel = Mutex<(any Channel)?>(nil)

    /// Connects on `group`'s next loop. Arrival times of collectors read by different threads are ordered only
    /// as those threads were scheduled: a test that compares arrivals across connections gives them one loop.
    static func connect(port: Int, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> ByteCollector {
        let collector = ByteCollector()
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) }
            }
            .connect(host: "127.0.0.1", port: port).get()
        collector.channel.withLock { $0 = channel }
        return collector
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        let total = received.withLock { received in
            received += bytes.readableBytesView
            return received.count
        }
        reads.withLock { $0.append((NIODeadline.now(), total)) }
    }

    /// When the read that completed the first `marker` came, or nil when it has not.
    func arrival(of marker: [UInt8]) -> NIODeadline? {
        let bytes = received.withLock { $0 }
        guard bytes.count >= marker.count,
            let start = (0...(bytes.count - marker.count)).first(where: { bytes[$0..<($0 + marker.count)].elementsEqual(marker) })
        else { return nil }
        return reads.withLock { reads in reads.first { $0.total >= start + marker.count }?.at }
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed.withLock { $0 = true }
    }

    func send(_ bytes: [UInt8]) async throws {
        guard let channel = channel.withLock({ $0 }) else { return }
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
    }

    func close() async {
        try? await channel.withLock({ $0 })?.close()
    }

    /// Everything received once it holds `marker` (within `timeout`).
    func waitFor(_ marker: [UInt8], within timeout: Duration = .seconds(5)) async throws -> [UInt8] {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let bytes = received.withLock { $0 }
            if bytes.count >= marker.count, (0...(bytes.count - marker.count)).contains(where: { bytes[$0..<($0 + marker.count)].elementsEqual(marker) }) {
                return bytes
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        Issue.record("not received: \(String(decoding: marker, as: UTF8.self))")
        return received.withLock { $0 }
    }

    /// Everything received once the server closed the connection (within 5 s).
    func waitForClose() async throws -> [UInt8] {
        let deadline = ContinuousClock.now + .seconds(5)
        while !closed.withLock({ $0 }) && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(closed.withLock { $0 }, "the server closed the connection")
        return received.withLock { $0 }
    }
}
