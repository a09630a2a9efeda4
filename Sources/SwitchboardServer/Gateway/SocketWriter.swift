#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
@_spi(Reflection) import Swift
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
/// properties (at offsets from the runtime's field metadata) and accepts the offsets only once a descriptor read
/// through them had the channel's local and peer addresses; if NIO's layout ever changes, it finds nothing and
/// the connection uses NIO's path alone.
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
        guard let socket = StoredField.socket.object(in: channel),
            let descriptor = StoredField.descriptor.value(in: socket, as: CInt.self), descriptor >= 0
        else { return nil }
        // The fields' offsets are the classes'; once a descriptor read through them had the channel's addresses,
        // every channel of those classes has its descriptor there (a `getsockname` and a `getpeername` saved per
        // connection). Until then, each is checked.
        let layout = VerifiedLayout(channel: channel, socket: socket)
        if !VerifiedLayout.known.withLock({ $0.contains(layout) }) {
            guard let local = channel.localAddress, let remote = channel.remoteAddress,
                Self.address(of: descriptor, peer: false) == Self.bytes(of: local),
                Self.address(of: descriptor, peer: true) == Self.bytes(of: remote)
            else { return nil }
            Self.addressChecks.add(1, ordering: .relaxed)
            _ = VerifiedLayout.known.withLock { $0.insert(layout) }
        }
        self.descriptor = descriptor
    }

    /// Descriptors whose addresses matched their channel's so far (for tests).
    static let addressChecks = Atomic<Int>(0)

    /// A channel class and socket class whose stored descriptor was checked against a channel's addresses.
    private struct VerifiedLayout: Hashable {
        static let known = Mutex<Set<VerifiedLayout>>([])

        let channel: ObjectIdentifier
        let socket: ObjectIdentifier

        init(channel: any Channel, socket: AnyObject) {
            self.channel = ObjectIdentifier(type(of: channel))
            self.socket = ObjectIdentifier(type(of: socket))
        }
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

/// `_EachFieldOptions.classType` (bit 0 in the standard library's ABI), which it declares as a mutable static
/// that Swift 6 code cannot read.
private let classFields = _EachFieldOptions(rawValue: 1 << 0)

/// A stored property of NIO's channel and socket classes, read at its byte offset.
///
/// The offset comes from the Swift runtime's field metadata (the standard library's reflection SPI), looked up
/// once per class: a `Mirror` of a NIO channel (dozens of stored properties, generic superclasses) cost 5% of
/// the server's CPU in a connect storm when walked for every connection. Only a field with the expected name
/// and type is read, and ``SocketWriter`` still checks the descriptor's addresses against the channel's.
private struct StoredField: Sendable {
    /// `BaseSocketChannel.socket`: the channel's socket object.
    static let socket = StoredField(label: "socket", matches: { $0 is AnyObject.Type })
    /// `BaseSocket.descriptor`: the socket's file descriptor.
    static let descriptor = StoredField(label: "descriptor", matches: { $0 == CInt.self })

    let label: String
    let matches: @Sendable (any Any.Type) -> Bool

    /// Offsets found so far, by class and label (a handful of entries: one per channel and socket class).
    private static let offsets = Mutex<[Key: Int?]>([:])
    private struct Key: Hashable {
        let type: ObjectIdentifier
        let label: String
    }

    /// The object this field of `instance` refers to, if `instance`'s class has it.
    func object(in instance: AnyObject) -> AnyObject? {
        guard let offset = offset(in: type(of: instance)) else { return nil }
        return withExtendedLifetime(instance) {
            Unmanaged.passUnretained(instance).toOpaque().load(fromByteOffset: offset, as: AnyObject.self)
        }
    }

    /// This field of `instance` as `T` (a trivial type the field was checked to be), if `instance`'s class has it.
    func value<T: BitwiseCopyable>(in instance: AnyObject, as _: T.Type) -> T? {
        guard let offset = offset(in: type(of: instance)) else { return nil }
        return withExtendedLifetime(instance) {
            Unmanaged.passUnretained(instance).toOpaque().load(fromByteOffset: offset, as: T.self)
        }
    }

    private func offset(in type: AnyClass) -> Int? {
        let key = Key(type: ObjectIdentifier(type), label: label)
        if let known = Self.offsets.withLock({ $0[key] }) { return known }
        var found: Int?
        // Superclasses' fields included; false if the runtime cannot list them.
        _forEachField(of: type, options: classFields) { name, offset, fieldType, _ in
            guard String(cString: name) == label, matches(fieldType) else { return true }
            found = offset
            return false
        }
        Self.offsets.withLock { $0[key] = found }
        return found
    }
}
