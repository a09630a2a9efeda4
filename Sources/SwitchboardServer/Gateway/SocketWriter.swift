#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

/// Writes straight to an upgraded connection's socket, beside NIO's channel write path.
///
/// A broadcast is one small frame per subscriber, and NIO's write path (pipeline, pending-writes queue,
/// flush, lifecycle checks, first touches of each channel's objects) cost more user CPU per delivery than
/// the `send` itself. This is a `send(2)` on the descriptor, nothing else. Its caller keeps the rules that
/// make sharing the socket with NIO safe (``WebSocketTransport``'s outbound path):
/// - it writes only on the channel's event loop, and stops at `channelInactive`: NIO closes the descriptor
///   only in its `close0`, which fires `channelInactive` before the loop runs anything else, so a closed (or
///   reused) descriptor is never written;
/// - it writes only while NIO holds none of the connection's bytes, and hands what the socket did not take
///   to NIO, so bytes never overtake each other and NIO's writability and back-pressure still apply.
///
/// The descriptor is the one the node accepted itself (``ListeningSocket``) and gave to NIO with
/// `ClientBootstrap.withConnectedSocket`: NIO does not make a channel's descriptor public.
struct SocketWriter: Sendable {
    /// What a ``send(_:)`` did.
    enum Outcome {
        /// Every byte was taken.
        case complete
        /// The socket took the first `sent` bytes (possibly none) and has no room for more now.
        case partial(sent: Int)
        /// The socket refused the write (reset, shut down, …): NIO's path will meet the same error and close.
        case failed
    }

    let descriptor: CInt

    /// Sends `bytes` without blocking.
    func send(_ bytes: ByteBuffer) -> Outcome {
        bytes.withUnsafeReadableBytes { Self.send($0, to: descriptor) }
    }

    /// Sends `buffer` to `descriptor` without blocking. The caller keeps the rules above.
    static func send(_ buffer: UnsafeRawBufferPointer, to descriptor: CInt) -> Outcome {
        guard let start = buffer.baseAddress else { return .complete }
        var sent = 0
        while sent < buffer.count {
            let result = sendNoSignal(descriptor, start + sent, buffer.count - sent)
            if result >= 0 {
                sent += result
                continue
            }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .partial(sent: sent)
            default: return sent == 0 ? .failed : .partial(sent: sent)
            }
        }
        return .complete
    }

    private static func sendNoSignal(_ descriptor: CInt, _ pointer: UnsafeRawPointer, _ count: Int) -> Int {
        #if canImport(Darwin)
        // Darwin has no MSG_NOSIGNAL; NIO sets SO_NOSIGPIPE on its sockets.
        return Darwin.send(descriptor, pointer, count, 0)
        #else
        return Glibc.send(descriptor, pointer, count, CInt(MSG_NOSIGNAL))
        #endif
    }
}
