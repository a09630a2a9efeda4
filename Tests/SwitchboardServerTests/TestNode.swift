import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// A live Switchboard node on a loopback port for one test, shut down gracefully afterwards.
struct TestNode: Sendable {
    static let secret = String(repeating: "test-secret-", count: 4)

    let node: Node
    let port: Int
    /// One of the node's event loops (for test work that needs one; with a one-loop group, the loop of every connection).
    let eventLoop: any EventLoop
    /// The TCP connections the node accepted that are still open.
    let openConnections: OpenConnections

    /// Runs `body` against a fresh node built with `configure`d settings.
    /// - Parameter eventLoopGroup: the node's own loops (default: the process-wide group the test clients share).
    static func with(
        _ configure: (inout Settings) -> Void = { _ in },
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        makeBroker: (Hub, any LocalRecipients) -> any Broker = { LocalBroker(hub: $0, recipients: $1) },
        _ body: (TestNode) async throws -> Void
    ) async throws {
        var settings = Settings()
        settings.host = "127.0.0.1"
        settings.port = 0
        settings.jwtSecret = secret
        configure(&settings)
        var logger = Logger(label: "switchboard-test")
        logger.logLevel = .warning
        let publicKey = try settings.jwtPublicKey.map { try String(contentsOfFile: $0, encoding: .utf8) }
        let tokens = try await TokenVerifier(secret: settings.jwtSecret, publicKeyPEM: publicKey, leeway: settings.jwtLeeway)
        let node = try Node(settings: settings, tokens: tokens, logger: logger, eventLoopGroup: eventLoopGroup, makeBroker: makeBroker)
        let (listenings, listeningContinuation) = AsyncStream.makeStream(of: RunningServer.self)
        let app = buildApplication(node: node) { listening in
            listeningContinuation.yield(listening)
            listeningContinuation.finish()
        }
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var iterator = listenings.makeAsyncIterator()
            guard let listening = await iterator.next(), listening.port > 0 else {
                await group.triggerGracefulShutdown()
                Issue.record("server did not start")
                return
            }
            do {
                try await body(
                    TestNode(node: node, port: listening.port, eventLoop: eventLoopGroup.next(), openConnections: listening.openConnections))
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    /// A token signed with the test secret.
    func token(
        _ userId: String, role: Role = .user, tier: String? = nil, channels: [String]? = nil, ttl: Duration? = nil
    ) async throws -> String {
        try await TokenIssuer(secret: Self.secret).token(userId: userId, role: role, tier: tier, channels: channels, ttl: ttl)
    }

    /// An upgraded client that has read its `welcome` frame.
    func client(
        token: String? = nil, query: String = "", localAddress: String? = nil, answerPings: Bool = true,
        receiveBufferBytes: Int? = nil
    ) async throws -> TestClient {
        var path = "/ws"
        var parameters: [String] = []
        if let token { parameters.append("token=\(token)") }
        if !query.isEmpty { parameters.append(query) }
        if !parameters.isEmpty { path += "?" + parameters.joined(separator: "&") }
        let socket = try await TestWebSocket.open(
            port: port, path: path, localAddress: localAddress, answerPings: answerPings, receiveBufferBytes: receiveBufferBytes)
        let welcome = try await socket.nextText()
        #expect(try TestClient.parse(welcome)["type"] as? String == "welcome")
        return TestClient(socket: socket, welcomeText: welcome)
    }

    /// An upgrade attempt with raw headers.
    func upgrade(path: String = "/ws", headers: [(String, String)] = [], localAddress: String? = nil) async throws -> TestWebSocket.Outcome {
        try await TestWebSocket.connect(port: port, path: path, headers: headers, localAddress: localAddress)
    }

    func request(_ method: String, _ path: String, token: String? = nil, body: String? = nil) async throws -> HTTPTestResponse {
        var headers: [(String, String)] = []
        if let token { headers.append(("Authorization", "Bearer \(token)")) }
        return try await HTTPTestClient.request(method, path, port: port, headers: headers, body: body)
    }
}

/// A test WebSocket speaking Switchboard's JSON protocol.
struct TestClient: Sendable {
    let socket: TestWebSocket
    let welcomeText: String

    /// The `welcome` frame this connection started with.
    var welcome: [String: Any] { (try? Self.parse(welcomeText)) ?? [:] }

    static func parse(_ text: String) throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw WebSocketTestClientError.badResponse("not a JSON object: \(text)")
        }
        return object
    }

    func send(_ message: [String: Any]) async throws {
        let data = try JSONSerialization.data(withJSONObject: message)
        try await socket.send(String(decoding: data, as: UTF8.self))
    }

    /// The next JSON message.
    func next(timeout: Duration = .seconds(5)) async throws -> [String: Any] {
        try Self.parse(try await socket.nextText(timeout: timeout))
    }

    /// Sends `message` and returns the next message (its reply).
    func request(_ message: [String: Any]) async throws -> [String: Any] {
        try await send(message)
        return try await next()
    }

    /// Subscribes and expects `subscribed`.
    func subscribe(_ channel: String) async throws {
        let reply = try await request(["type": "subscribe", "channel": channel])
        #expect(reply["type"] as? String == "subscribed", "subscribe \(channel): \(reply)")
    }

    /// The close code the server sends next (nil: the TCP connection ended without a close frame).
    func closeCode(timeout: Duration = .seconds(5)) async throws -> UInt16? {
        try await socket.closeFrame(timeout: timeout)?.closeCode
    }

    func close() async { await socket.close() }
}

extension HTTPTestResponse {
    /// The body as a JSON object.
    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:]
    }

    /// `error.code` of SPEC's error body.
    var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
}

extension TestWebSocket.Outcome {
    /// The refusal, or nil when the upgrade succeeded.
    var isUpgraded: Bool { refusal == nil }

    var refusal: HTTPTestResponse? {
        if case .refused(let response) = self { return response }
        return nil
    }
}
