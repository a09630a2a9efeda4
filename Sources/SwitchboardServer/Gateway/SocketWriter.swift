#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import Synchronization

/// Writes straight to an upgraded connection's socket, beside NIO's channel write path.
///
/// A broadcast is one small frame per subscriber, and NIO's write path (pipeline, pending-writes queue,
/// flush, lifecycle checks, first touches of each channel's objects) cost more user CPU per delivery than
/// the `send` itself. This is a `send(2)` on the descriptor, nothing else. Its caller keeps the rules that
/// make sharing the socket with NIO safe (``WebSocketConnection``'s outbound path):
/// - it writes only on the channel's event loop, and stops at `channelInactive`: NIO closes the descriptor
///   only in its `close0`, which fires `channelInactive` before the loop runs anything else, so a closed (or
///   reused) descriptor is never written;
/// - it writes only while NIO holds none of the connection's bytes, and hands what the socket did not take
///   to NIO, so bytes never overtake each other and NIO's writability and back-pressure still apply.
///
/// NIO does not make a channel's descriptor public. ``init(channel:)`` reads it from the channel's stored
/// properties by reflection and accepts it only if the descriptor's local and peer addresses are the
/// channel's; if NIO's layout ever changes, it finds nothing and the connection uses NIO's path alone.
struct SocketWriter {
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

    /// The writer of `channel`'s socket, or nil when its descriptor cannot be found and verified.
    /// On the channel's event loop, while the channel is active.
    init?(channel: any Channel) {
        guard let local = channel.localAddress, let remote = channel.remoteAddress,
            let socket = Self.storedProperty("socket", of: channel),
            let descriptor = Self.storedProperty("descriptor", of: socket) as? CInt, descriptor >= 0,
            Self.address(of: descriptor, peer: false) == Self.bytes(of: local),
            Self.address(of: descriptor, peer: true) == Self.bytes(of: remote)
        else { return nil }
        self.descriptor = descriptor
    }

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

    /// The value of the stored property `label` of `subject` or of one of its superclasses.
    ///
    /// Walking a mirror's children copies each child's value into an existential, which for a NIO channel (dozens
    /// of stored properties) was 8% of the server's CPU in a connect storm. So the position of `label` (which
    /// superclass, which child) is found once per type and then read directly; the caller still verifies what
    /// it got, so a stale position can only make it find nothing.
    private static func storedProperty(_ label: String, of subject: Any) -> Any? {
        let key = PropertyPosition.Key(type: ObjectIdentifier(type(of: subject)), label: label)
        if let position = PropertyPosition.known.withLock({ $0[key] }) {
            return position.value(in: subject, label: label)
        }
        var mirror: Mirror? = Mirror(reflecting: subject)
        var depth = 0
        while let current = mirror {
            if let offset = current.children.firstIndex(where: { $0.label == label }) {
                let position = PropertyPosition(depth: depth, offset: current.children.distance(from: current.children.startIndex, to: offset))
                PropertyPosition.known.withLock { $0[key] = position }
                return current.children[offset].value
            }
            mirror = current.superclassMirror
            depth += 1
        }
        return nil
    }

    /// The socket's own (`peer: false`) or its peer's address, as `sockaddr` bytes.
    private static func address(of descriptor: CInt, peer: Bool) -> [UInt8]? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                peer ? getpeername(descriptor, $0, &length) : getsockname(descriptor, $0, &length)
            }
        }
        guard result == 0 else { return nil }
        return withUnsafeBytes(of: &storage) { Array($0.prefix(Int(length))) }
    }

    private static func bytes(of address: SocketAddress) -> [UInt8] {
        address.withSockAddr { pointer, length in
            Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(pointer), count: length))
        }
    }
}

/// Where a stored property sits in a type's mirror: how many superclasses up, and which child there.
private struct PropertyPosition: Sendable {
    struct Key: Hashable, Sendable {
        let type: ObjectIdentifier
        let label: String
    }

    /// Positions found so far, by type and label (a handful of entries: one per channel and socket type).
    static let known = Mutex<[Key: PropertyPosition]>([:])

    let depth: Int
    let offset: Int

    /// The property's value in `subject`, if the child at this position still has that label.
    func value(in subject: Any, label: String) -> Any? {
        var mirror = Mirror(reflecting: subject)
        for _ in 0..<depth {
            guard let superclass = mirror.superclassMirror else { return nil }
            mirror = superclass
        }
        let children = mirror.children
        guard offset < children.count else { return nil }
        let child = children[children.index(children.startIndex, offsetBy: offset)]
        return child.label == label ? child.value : nil
    }
}
