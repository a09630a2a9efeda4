import Foundation

#if canImport(Glibc)
import Glibc
#endif
import RedisTestSupport
import SwitchboardCore
import Synchronization
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// The `switchboard` executable itself: `token`, `serve`, SIGTERM, `--demo`.
@Suite struct CommandLineTests {
    static let secret = String(repeating: "cli-secret-", count: 4)

    /// The `switchboard` binary built next to this test bundle.
    static var executable: URL {
        get throws {
            let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            let candidate = directory.appendingPathComponent("switchboard")
            guard FileManager.default.isExecutableFile(atPath: candidate.path) else {
                throw WebSocketTestClientError.badResponse("switchboard executable not found at \(candidate.path)")
            }
            return candidate
        }
    }

    /// A running `switchboard serve` with its output pipes.
    final class ServerProcess: Sendable {
        let process: ChildProcess
        let output = Pipe()
        let errors = Pipe()

        init(arguments: [String], environment: [String: String] = [:]) throws {
            process = try ChildProcess(
                executable: try CommandLineTests.executable.path, arguments: arguments, environment: environment,
                standardOutput: .pipe(output), standardError: .pipe(errors))
        }

        /// Lines of stdout until `predicate` matches one (bounded by `timeout`).
        func readStdout(until predicate: @escaping @Sendable (String) -> Bool, timeout: Duration = .seconds(20)) async throws -> [String] {
            try await Self.readLinesOnOwnThread(from: output.fileHandleForReading, until: predicate, timeout: timeout)
        }

        func readStderr(until predicate: @escaping @Sendable (String) -> Bool, timeout: Duration = .seconds(20)) async throws -> [String] {
            try await Self.readLinesOnOwnThread(from: errors.fileHandleForReading, until: predicate, timeout: timeout)
        }

        /// ``readLines(from:until:timeout:)`` on a thread of its own: its `poll` must not hold one of Swift's few
        /// cooperative threads while it waits (a process that stays silent stalled every other test meanwhile).
        static func readLinesOnOwnThread(
            from handle: FileHandle, until predicate: @escaping @Sendable (String) -> Bool, timeout: Duration
        ) async throws -> [String] {
            try await onOwnThread { try readLines(from: handle, until: predicate, timeout: timeout) }
        }

        /// Reads until a line matches, the stream ends or `timeout` passes: it waits with `poll` before each
        /// read, so a silent process cannot hold it (a bare read would block past any deadline).
        static func readLines(from handle: FileHandle, until predicate: (String) -> Bool, timeout: Duration) throws -> [String] {
            let deadline = ContinuousClock.now + timeout
            var text = ""
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let remaining = deadline - ContinuousClock.now
                guard remaining > .zero else { break }
                var descriptor = pollfd(fd: handle.fileDescriptor, events: Int16(POLLIN), revents: 0)
                let milliseconds = Int32(min(remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000, 60_000))
                guard poll(&descriptor, 1, max(1, milliseconds)) > 0 else { continue }
                let count = read(handle.fileDescriptor, &chunk, chunk.count)
                if count <= 0 { break }
                text += String(decoding: chunk[..<count], as: UTF8.self)
                let lines = text.split(separator: "\n").map(String.init)
                if lines.contains(where: predicate) { return lines }
            }
            throw WebSocketTestClientError.timedOut
        }

        /// SIGTERM, then SIGKILL for a server still running 10 s later; reaped either way, on a thread of its own
        /// (a test's `defer` does not wait for it, and a server that ignored SIGTERM would outlive the run).
        func terminate() {
            process.send(SIGTERM)
            let process = self.process
            Thread.detachNewThread {
                guard process.waitUntilExit(within: .seconds(10)) == nil else { return }
                process.send(SIGKILL)
                process.waitUntilExit()
            }
        }

        /// Waits for the "listening on HOST:PORT" log line and returns the port.
        func listeningPort() async throws -> Int {
            let lines = try await readStderr(until: { $0.contains("listening on") })
            let line = lines.first { $0.contains("listening on") } ?? ""
            guard let port = line.split(separator: ":").last.flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) }) else {
                throw WebSocketTestClientError.badResponse("no port in: \(line)")
            }
            return port
        }
    }

    @Test func tokenCommandPrintsAVerifiableJWT() async throws {
        let (status, output, _) = try await OperatorCommandTests.run(
            ["token", "--sub", "alice", "--role", "admin", "--tier", "premium", "--ttl", "1h", "--jwt-secret", Self.secret])
        #expect(status == 0)
        let token = output.trimmingCharacters(in: .whitespacesAndNewlines)
        let identity = try await TokenVerifier(secret: Self.secret, publicKeyPEM: nil).verify(token)
        #expect(identity.userId == "alice")
        #expect(identity.role == .admin)
        #expect(identity.tier == "premium")
        #expect((identity.expiresAt ?? 0) > Date().timeIntervalSince1970 + 3000)
        // SPEC §1: `exp` is an integer NumericDate, not a fraction.
        let payload = try #require(Self.decodeSegment(String(token.split(separator: ".")[1])))
        let exp = try #require(payload.range(of: #""exp":[0-9.eE+-]+"#, options: .regularExpression).map { payload[$0] })
        let digitsOnly = exp.dropFirst(6).allSatisfy { $0.isNumber }
        #expect(digitsOnly, "exp must be whole seconds: \(exp)")
    }

    /// A base64url JWT segment as text.
    static func decodeSegment(_ segment: String) -> String? {
        var base64 = segment.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        return Data(base64Encoded: base64).map { String(decoding: $0, as: UTF8.self) }
    }

    @Test func lineReaderGivesUpOnASilentProcess() async throws {
        let pipe = Pipe()  // nothing is ever written to it, and it is never closed
        let started = ContinuousClock.now
        await #expect(throws: WebSocketTestClientError.timedOut) {
            try await ServerProcess.readLinesOnOwnThread(from: pipe.fileHandleForReading, until: { _ in true }, timeout: .milliseconds(300))
        }
        // Far past the 300 ms timeout, far short of a reader that waits for bytes: under the parallel test run on
        // 2 cores, starting the reader's thread alone once took 1.8 s (a 2 s bound failed).
        #expect(ContinuousClock.now - started < .seconds(10))
    }

    @Test func logLevelComesFromTheEnvironment() async throws {
        // SPEC §1: every setting is also an environment variable; at `debug` the server logs its closes.
        let server = try ServerProcess(
            arguments: ["serve", "--host", "127.0.0.1", "--port", "0", "--jwt-secret", Self.secret],
            environment: ["SWITCHBOARD_LOG_LEVEL": "debug"])
        defer { server.terminate() }
        let socket = try await TestWebSocket.open(port: try await server.listeningPort())
        _ = try await socket.nextText()
        try await socket.sendFrame(opcode: 0x1, payload: Array("{}".utf8), masked: false)
        _ = try await socket.closeFrame()
        let lines = try await server.readStderr(until: { $0.contains("closing connection") }, timeout: .seconds(10))
        #expect(lines.contains { $0.contains("debug") && $0.contains("closing connection") })
    }

    /// An unknown `SWITCHBOARD_*` variable is reported at start, not silently ignored (a known one still applies).
    @Test func anUnknownEnvironmentVariableIsReportedAtStart() async throws {
        let server = try ServerProcess(
            arguments: ["serve", "--host", "127.0.0.1", "--port", "0", "--jwt-secret", Self.secret],
            environment: ["SWITCHBOARD_HEARTBEAT_MX": "garbage", "SWITCHBOARD_HEARTBEAT_MS": "5000"])
        defer { server.terminate() }
        let lines = try await server.readStderr(until: { $0.contains("listening on") })
        let report = lines.first { $0.contains("name no setting") }
        #expect(report?.contains("SWITCHBOARD_HEARTBEAT_MX") == true, "\(lines)")
        #expect(report?.contains("SWITCHBOARD_HEARTBEAT_MS") == false, "a known variable is not reported")
    }

    @Test func serveRefusesAShortSecret() async throws {
        let (status, _, message) = try await OperatorCommandTests.run(["serve", "--port", "0", "--jwt-secret", "short"])
        #expect(status != 0)
        #expect(message.contains("at least 32 bytes"))
    }

    @Test func sigtermClosesWebSocketsWith1001AndExitsZero() async throws {
        let server = try ServerProcess(arguments: ["serve", "--host", "127.0.0.1", "--port", "0", "--jwt-secret", Self.secret])
        defer { server.terminate() }
        let socket = try await TestWebSocket.open(port: try await server.listeningPort())
        _ = try await socket.nextText()
        server.terminate()  // SIGTERM
        let frame = try await socket.closeFrame()
        #expect(frame?.closeCode == 1001)
        #expect(try await onOwnThread { server.process.waitUntilExit() } == .exit(0))
    }

    @Test func sigtermWaitsForAnInFlightHTTPRequest() async throws {
        let server = try ServerProcess(arguments: ["serve", "--host", "127.0.0.1", "--port", "0", "--jwt-secret", Self.secret])
        defer { server.terminate() }
        let port = try await server.listeningPort()
        let admin = try await TokenIssuer(secret: Self.secret).token(userId: "ops", role: .admin)
        let body = #"{"channel":"system_status","event":"maintenance","data":{"in":"5m"}}"#
        let socket = try BlockingSocket(port: port)
        // The head and half the body: the request is in flight when SIGTERM arrives.
        try socket.send(
            "POST /api/v1/websocket/broadcast HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(admin)\r\n"
                + "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body.prefix(20))
        try await Task.sleep(for: .milliseconds(300))  // no event to wait on: let the server read what was sent
        server.terminate()  // SIGTERM
        try await Task.sleep(for: .milliseconds(300))
        try socket.send(String(body.dropFirst(20)))
        let response = try await onOwnThread { try socket.receive(until: "\"recipients\"", timeout: .seconds(5)) }
        #expect(response.hasPrefix("HTTP/1.1 200"), "the request was completed: \(response)")
        #expect(try await onOwnThread { server.process.waitUntilExit() } == .exit(0))
    }

    @Test func demoPrintsAnAdminTokenAndPublishesQuotes() async throws {
        let server = try ServerProcess(arguments: ["serve", "--demo", "--host", "127.0.0.1", "--port", "0"])
        defer { server.terminate() }
        let lines = try await server.readStdout(until: { $0.split(separator: ".").count == 3 })
        let token = try #require(lines.first { $0.split(separator: ".").count == 3 })
        let socket = try await TestWebSocket.open(port: try await server.listeningPort(), path: "/ws?token=\(token)")
        let welcome = try TestClient.parse(try await socket.nextText())
        #expect(welcome["role"] as? String == "admin")
        try await socket.send(#"{"type":"subscribe","channel":"market_data:AAPL"}"#)
        #expect(try TestClient.parse(try await socket.nextText())["type"] as? String == "subscribed")
        let quote = try TestClient.parse(try await socket.nextText())
        #expect(quote["event"] as? String == "quote")
        #expect((quote["data"] as? [String: Any])?["symbol"] as? String == "AAPL")
        await socket.close()
    }

    @Test func demoPrintsATraderTokenWhoseConnectionGetsSignalsAndFills() async throws {
        let server = try ServerProcess(arguments: ["serve", "--demo", "--host", "127.0.0.1", "--port", "0"])
        defer { server.terminate() }
        let guide = try await server.readStdout(until: { $0.contains("/api/v1/websocket/broadcast") })
        let heading = try #require(guide.firstIndex { $0.hasPrefix("demo premium trader token") })
        let trader = guide[heading + 1]
        #expect(trader.split(separator: ".").count == 3)
        #expect(guide.contains { $0.contains("ws://127.0.0.1:PORT/ws?token=") }, "ready-to-paste commands: \(guide)")
        #expect(guide.contains { $0.hasPrefix("dashboard: http://127.0.0.1:PORT/") })
        let socket = try await TestWebSocket.open(
            port: try await server.listeningPort(), path: "/ws?token=\(trader)&subscribe=trading_signals:momentum,trading_signals:breakout")
        let welcome = try TestClient.parse(try await socket.nextText())
        #expect(welcome["userId"] as? String == "demo-trader" && welcome["role"] as? String == "user", "\(welcome)")
        var events: Set<String> = []
        let deadline = ContinuousClock.now + .seconds(15)
        while !(events.contains("signal") && events.contains("fill")) && ContinuousClock.now < deadline {
            let message = try TestClient.parse(try await socket.nextText(timeout: .seconds(10)))
            if message["type"] as? String == "subscribed" { continue }
            if let event = message["event"] as? String { events.insert(event) }
            if message["event"] as? String == "fill" { #expect(message["channel"] as? String == "user:demo-trader") }
        }
        #expect(events.contains("signal") && events.contains("fill"), "signals on trading_signals:*, fills on user:demo-trader: \(events)")
        await socket.close()
    }
}

/// A plain blocking TCP client with receive timeouts, for requests sent in pieces.
final class BlockingSocket: Sendable {
    /// The socket's descriptor, -1 once ``reset()`` closed it.
    private let open: Mutex<Int32>
    private var descriptor: Int32 { open.withLock { $0 } }

    init(port: Int) throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        open = Mutex(descriptor)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw WebSocketTestClientError.badResponse("connect failed: errno \(errno)") }
    }

    deinit {
        if descriptor >= 0 { close(descriptor) }
    }

    /// Ends the connection now with a reset (SO_LINGER 0, then close), as a client that vanishes does.
    func reset() {
        open.withLock { descriptor in
            guard descriptor >= 0 else { return }
            var option = linger(l_onoff: 1, l_linger: 0)
            setsockopt(descriptor, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
            close(descriptor)
            descriptor = -1
        }
    }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        guard Glibc.send(descriptor, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else {
            throw WebSocketTestClientError.badResponse("send failed: errno \(errno)")
        }
    }

    /// Ends the sending side (a TCP FIN); the socket still receives.
    func shutdownWrite() {
        shutdown(descriptor, Int32(SHUT_WR))
    }

    /// What the server sends until `marker` appears, the connection ends or `timeout` passes.
    func receive(until marker: String, timeout: Duration) throws -> String {
        let deadline = ContinuousClock.now + timeout
        var text = ""
        var chunk = [UInt8](repeating: 0, count: 4096)
        while !text.contains(marker), ContinuousClock.now < deadline {
            var waiting = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&waiting, 1, 100) > 0 else { continue }
            let count = recv(descriptor, &chunk, chunk.count, 0)
            if count <= 0 { break }
            text += String(decoding: chunk[..<count], as: UTF8.self)
        }
        return text
    }
}
