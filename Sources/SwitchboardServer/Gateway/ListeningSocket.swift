#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import NIOCore
import Synchronization

/// The node's listening socket, accepted on a thread of its own.
///
/// The node accepts connections itself, instead of through NIO's `ServerBootstrap`, for one reason: to know each
/// connection's descriptor. Upgraded connections are written to with `send(2)` on it (``SocketWriter``), and NIO
/// keeps a channel's descriptor private. Each accepted socket is handed to NIO with its public
/// `ClientBootstrap.withConnectedSocket`, which makes it an ordinary channel; the descriptor stays known.
///
/// The thread blocks in `accept` and does nothing else: adopting a socket is one task on the loop that serves
/// it. ``close()`` stops it (`shutdown(2)` wakes a blocked `accept` on Linux); the descriptor is closed by the
/// thread once it left `accept`, so it is never reused while the thread could still accept on it.
final class ListeningSocket: Sendable {
    /// Why the socket could not listen.
    struct BindError: Error, CustomStringConvertible {
        let operation: String
        let code: CInt
        var description: String { "\(operation) failed: \(String(cString: strerror(code)))" }
    }

    private let descriptor: CInt
    /// The bound port (the kernel's pick when asked for port 0).
    let port: Int
    private let state = Mutex(State.listening)
    private let stopped = DispatchSemaphore(value: 0)

    private enum State {
        case listening
        case accepting
        case closing
        case closed
    }

    /// Binds `host:port` (`SO_REUSEADDR`) and listens with `backlog`.
    init(host: String, port: Int, backlog: Int) throws {
        let address = try SocketAddress.makeAddressResolvingHost(host, port: port)
        let family: CInt =
            switch address {
            case .v6: AF_INET6
            default: AF_INET
            }
        #if canImport(Darwin)
        let descriptor = socket(family, SOCK_STREAM, 0)
        #else
        let descriptor = socket(family, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        #endif
        guard descriptor >= 0 else { throw BindError(operation: "socket", code: errno) }
        do {
            var one: CInt = 1
            guard setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size)) == 0 else {
                throw BindError(operation: "setsockopt", code: errno)
            }
            let bound = address.withSockAddr { pointer, length in bind(descriptor, pointer, socklen_t(length)) }
            guard bound == 0 else { throw BindError(operation: "bind \(host):\(port)", code: errno) }
            guard listen(descriptor, CInt(clamping: backlog)) == 0 else { throw BindError(operation: "listen", code: errno) }
            guard let boundPort = Self.port(of: descriptor) else { throw BindError(operation: "getsockname", code: errno) }
            self.descriptor = descriptor
            self.port = boundPort
        } catch {
            _ = closeDescriptor(descriptor)
            throw error
        }
    }

    deinit {
        if state.withLock({ $0 }) == .listening { _ = closeDescriptor(descriptor) }
    }

    /// Accepts connections on a new thread until ``close()``, handing each descriptor to `adopt`, which owns it
    /// from then on and calls `adopted` once the connection is in place. Call once.
    ///
    /// At most `maxPending` connections are accepted and not yet in place: the thread takes no more from the
    /// kernel's backlog until the loops caught up. Accepting everything at once (a reconnect storm) would hold
    /// every connection's objects and buffers in the process at the same moment, where the backlog holds them
    /// in the kernel and the loops take them at their pace, as NIO's own listener did (SPEC §13).
    func startAccepting(maxPending: Int, _ adopt: @escaping @Sendable (CInt, _ adopted: @escaping @Sendable () -> Void) -> Void) {
        let started = state.withLock { state -> Bool in
            guard state == .listening else { return false }
            state = .accepting
            return true
        }
        guard started else { return }
        let permits = DispatchSemaphore(value: max(1, maxPending))
        Thread.detachNewThread { [self] in
            acceptLoop(permits: permits) { descriptor in adopt(descriptor) { permits.signal() } }
            _ = closeDescriptor(descriptor)
            state.withLock { $0 = .closed }
            stopped.signal()
        }
    }

    private func acceptLoop(permits: DispatchSemaphore, _ adopt: @Sendable (CInt) -> Void) {
        while state.withLock({ $0 }) == .accepting {
            permits.wait()
            let connection = Self.accept(descriptor)
            if connection >= 0 {
                adopt(connection)
                continue
            }
            permits.signal()
            switch errno {
            case EINTR, ECONNABORTED, EAGAIN, EPROTO:
                continue
            case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                // Out of descriptors or memory: the backlog holds the connections meanwhile (counted in the
                // kernel's listen-queue counters once it overflows).
                usleep(50_000)
            default:
                // `close()` shut the socket down (EINVAL), or it is unusable.
                return
            }
        }
    }

    /// Stops accepting and waits until the thread closed the socket.
    func close() {
        let wasAccepting = state.withLock { state -> Bool in
            switch state {
            case .accepting:
                state = .closing
                return true
            case .listening:
                state = .closed
                _ = closeDescriptor(descriptor)
                return false
            case .closing, .closed:
                return false
            }
        }
        guard wasAccepting else { return }
        _ = shutdown(descriptor, CInt(SHUT_RDWR))
        stopped.wait()
    }

    /// The next connection's descriptor (close-on-exec; NIO makes it non-blocking when it adopts it), or -1.
    private static func accept(_ descriptor: CInt) -> CInt {
        #if canImport(Darwin)
        let connection = Darwin.accept(descriptor, nil, nil)
        #elseif canImport(Glibc)
        let connection = Glibc.accept(descriptor, nil, nil)
        #else
        let connection = Musl.accept(descriptor, nil, nil)
        #endif
        if connection >= 0 { _ = fcntl(connection, F_SETFD, FD_CLOEXEC) }
        return connection
    }

    private static func port(of descriptor: CInt) -> Int? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        guard result == 0 else { return nil }
        // `sin_port` and `sin6_port` both follow the 16-bit family, in network byte order.
        let family = CInt(storage.ss_family)
        guard family == AF_INET || family == AF_INET6 else { return nil }
        return withUnsafeBytes(of: &storage) { Int($0[2]) << 8 | Int($0[3]) }
    }
}

/// `close(2)`, named apart from ``ListeningSocket/close()``.
private func closeDescriptor(_ descriptor: CInt) -> CInt {
    #if canImport(Darwin)
    Darwin.close(descriptor)
    #elseif canImport(Glibc)
    Glibc.close(descriptor)
    #else
    Musl.close(descriptor)
    #endif
}
