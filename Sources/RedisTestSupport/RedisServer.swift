import Foundation
public import RedisClient

#if canImport(Glibc)
import Glibc
#endif

/// A `redis-server` of a test's own, on a free loopback port, in a temporary directory, with nothing saved;
/// stopped by its PID (never the machine's own Redis service). For tests: `RedisServer.with { server in … }`.
///
/// `@unchecked Sendable`: its one mutable field, the child, is replaced only by ``restart()``, which a test calls
/// while nothing else uses the server.
public final class RedisServer: @unchecked Sendable {
    public let port: Int
    private var process: ChildProcess?
    private let directory: URL
    private let arguments: [String]

    /// Starts one and waits until it accepts connections.
    /// - Parameter arguments: extra `redis-server` arguments (`--requirepass`, ...).
    public init(arguments: [String] = []) async throws {
        port = try Self.freePort()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("redis-\(UUID().uuidString)")
        self.arguments = arguments
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try await launch()
    }

    private func launch() async throws {
        guard let binary = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].first(where: FileManager.default.isExecutableFile) else {
            throw RedisClientError.server("redis-server is not installed (scripts/test installs it: apt-get install redis-server)")
        }
        let process = try ChildProcess(
            executable: binary,
            arguments: [
                "--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory.path,
                "--daemonize", "no", "--logfile", "",
            ] + arguments)
        self.process = process
        let deadline = ContinuousClock.now + .seconds(10)
        while !Self.accepts(port: port) {
            guard ContinuousClock.now < deadline, process.isRunning else {
                stop()
                throw RedisClientError.server("redis-server did not start on port \(port)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Kills the server and starts a new, empty one on the same port (a Redis that crashed and came back
    /// without its data).
    public func restart() async throws {
        kill()
        try await launch()
    }

    /// Kills the server and leaves it down (until ``restart()``).
    public func kill() {
        guard let process, process.isRunning else { return }
        process.send(SIGKILL)
        process.waitUntilExit()
    }

    public var url: RedisURL { RedisURL(host: "127.0.0.1", port: port) }

    /// SIGSTOP: Redis stops answering, but its sockets stay open (a hung server). Neither can be blocked.
    public func pause() { process?.send(SIGSTOP) }
    public func resume() { process?.send(SIGCONT) }

    /// SIGKILL: there is nothing to save.
    public func stop() {
        kill()
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { stop() }

    /// Runs `body` with a fresh server, stopped afterwards whatever happens.
    public static func with<T>(arguments: [String] = [], _ body: (RedisServer) async throws -> T) async throws -> T {
        let server = try await RedisServer(arguments: arguments)
        defer { server.stop() }
        return try await body(server)
    }

    /// A loopback TCP port nothing listens on now (for a process of a test's own).
    public static func freePort() throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(descriptor, pointer, length) == 0 && getsockname(descriptor, pointer, &length) == 0
            }
        }
        guard bound else { throw RedisClientError.server("no free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    private static func accepts(port: Int) -> Bool {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}
