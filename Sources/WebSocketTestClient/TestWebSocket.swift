public import NIOCore
import NIOPosix

/// A WebSocket client for tests: sees refused upgrades, sends any frame (even broken ones), reads close codes.
public final class TestWebSocket: Sendable {
    /// How an upgrade attempt ended.
    public enum Outcome: Sendable {
        case upgraded(TestWebSocket)
        case refused(HTTPTestResponse)
    }

    public let channel: any Channel
    /// The headers of the server's `101` response.
    public let handshakeHeaders: [(String, String)]
    private let frames: Mailbox<ServerFrame>
    private let end: EventLoopFuture<StreamEnd>

    private init(channel: any Channel, handshakeHeaders: [(String, String)], frames: Mailbox<ServerFrame>, end: EventLoopFuture<StreamEnd>) {
        self.channel = channel
        self.handshakeHeaders = handshakeHeaders
        self.frames = frames
        self.end = end
    }

    /// Opens a TCP connection and sends an upgrade request for `path`.
    /// - Parameters:
    ///   - headers: extra request headers (`Authorization`, `Origin`, ...).
    ///   - localAddress: source address to bind, e.g. `127.0.0.2`, to spread connections over IPs.
    ///   - answerPings: answer server pings with pongs, as browsers do.
    public static func connect(
        port: Int, host: String = "127.0.0.1", path: String = "/ws", headers: [(String, String)] = [],
        localAddress: String? = nil, answerPings: Bool = true, receiveBufferBytes: Int? = nil
    ) async throws -> Outcome {
        var request = "GET \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        request += "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        request += "\r\n"
        let (channel, response, frames, end) = try await open(
            host: host, port: port, localAddress: localAddress, answerPings: answerPings, receiveBufferBytes: receiveBufferBytes)
        try await channel.writeAndFlush(ByteBuffer(string: request))
        let head = try await response.get()
        if head.status == 101 {
            return .upgraded(TestWebSocket(channel: channel, handshakeHeaders: head.headers, frames: frames, end: end))
        }
        try? await channel.close()
        return .refused(head)
    }

    /// Connects and expects the upgrade to succeed.
    public static func open(
        port: Int, path: String = "/ws", headers: [(String, String)] = [], localAddress: String? = nil,
        answerPings: Bool = true, receiveBufferBytes: Int? = nil
    ) async throws -> TestWebSocket {
        switch try await connect(
            port: port, path: path, headers: headers, localAddress: localAddress, answerPings: answerPings,
            receiveBufferBytes: receiveBufferBytes)
        {
        case .upgraded(let socket): return socket
        case .refused(let response):
            throw WebSocketTestClientError.badResponse("upgrade refused: \(response.status) \(response.body)")
        }
    }

    /// Sends one masked text frame.
    public func send(_ text: String) async throws {
        try await sendFrame(opcode: 0x1, payload: Array(text.utf8))
    }

    /// Sends one frame exactly as described, broken ones included.
    public func sendFrame(opcode: UInt8, payload: [UInt8], fin: Bool = true, masked: Bool = true) async throws {
        try await channel.writeAndFlush(WireParser.clientFrame(opcode: opcode, payload: payload, fin: fin, masked: masked))
    }

    /// Sends raw bytes on the socket.
    public func sendRaw(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
    }

    /// The next frame of any kind.
    public func nextFrame(timeout: Duration = .seconds(5)) async throws -> ServerFrame {
        try await frames.take(timeout: timeout)
    }

    /// The next text message, skipping pings and pongs; fails on a close frame.
    public func nextText(timeout: Duration = .seconds(5)) async throws -> String {
        while true {
            let frame = try await nextFrame(timeout: timeout)
            switch frame.opcode {
            case 0x1: return frame.text
            case 0x8: throw WebSocketTestClientError.badResponse("closed with \(frame.closeCode.map(String.init) ?? "no code"): \(frame.closeReason)")
            default: continue
            }
        }
    }

    /// Waits for the server's close frame, skipping anything before it; nil when the TCP connection ends without one.
    public func closeFrame(timeout: Duration = .seconds(5)) async throws -> ServerFrame? {
        while true {
            do {
                let frame = try await nextFrame(timeout: timeout)
                if frame.opcode == 0x8 { return frame }
            } catch WebSocketTestClientError.closed {
                return nil
            }
        }
    }

    /// How the server ended the TCP stream, once it has (within `timeout`; nil if it is still open then).
    public func streamEnd(timeout: Duration) async -> StreamEnd? {
        let end = self.end
        return await withTaskGroup(of: StreamEnd?.self) { race in
            race.addTask { try? await end.get() }
            race.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await race.next() ?? nil
            race.cancelAll()
            if first == nil { try? await channel.close() }  // lets the first task finish
            return first
        }
    }

    /// Stops reading from the socket, so the server sees a client that does not keep up.
    public func pauseReading() async throws {
        try await channel.setOption(ChannelOptions.autoRead, value: false)
    }

    /// Reads from the socket again after ``pauseReading()``.
    public func resumeReading() async throws {
        try await channel.setOption(ChannelOptions.autoRead, value: true)
        channel.read()
    }

    /// Sends a close frame with `code` and closes the socket.
    public func close(code: UInt16 = 1000) async {
        var payload: [UInt8] = [UInt8(code >> 8), UInt8(code & 0xFF)]
        payload.append(contentsOf: Array("bye".utf8))
        try? await sendFrame(opcode: 0x8, payload: payload)
        try? await channel.close()
    }

    static func open(
        host: String, port: Int, localAddress: String?, answerPings: Bool, receiveBufferBytes: Int? = nil
    ) async throws -> (any Channel, EventLoopFuture<HTTPTestResponse>, Mailbox<ServerFrame>, EventLoopFuture<StreamEnd>) {
        let eventLoop = MultiThreadedEventLoopGroup.singleton.next()
        let response = eventLoop.makePromise(of: HTTPTestResponse.self)
        let end = eventLoop.makePromise(of: StreamEnd.self)
        let frames = Mailbox<ServerFrame>(eventLoop: eventLoop)
        var bootstrap = ClientBootstrap(group: eventLoop)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ClientHandler(response: response, frames: frames, end: end, answerPings: answerPings))
                }
            }
        if let localAddress { bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: localAddress, port: 0)) }
        if let receiveBufferBytes { bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(receiveBufferBytes)) }
        let channel = try await bootstrap.connect(host: host, port: port).get()
        return (channel, response.futureResult, frames, end.futureResult)
    }
}

/// Plain HTTP/1.1 requests for tests (one request per connection).
public enum HTTPTestClient {
    public static func request(
        _ method: String, _ path: String, port: Int, headers: [(String, String)] = [], body: String? = nil
    ) async throws -> HTTPTestResponse {
        var request = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        if let body {
            request += "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        } else {
            request += "\r\n"
        }
        let (channel, response, _, _) = try await TestWebSocket.open(host: "127.0.0.1", port: port, localAddress: nil, answerPings: false)
        try await channel.writeAndFlush(ByteBuffer(string: request))
        let result = try await response.get()
        try? await channel.close()
        return result
    }
}
