import NIOCore
import SwitchboardCore

/// What a lane hands a member connection when it cannot write to the connection's socket itself: native
/// WebSocket connections and Socket.IO sessions on a WebSocket. On the member's event loop.
protocol LaneMemberConnection: AnyObject {
    /// Queues lane messages that could not be written directly, behind what the connection holds.
    func queueFromLane(_ deliveries: ArraySlice<Delivery>)
    /// Takes over what a direct write left: the rest of a short write, or all of a refused one.
    func finishDirectWrite(_ bytes: ByteBuffer, outcome: SocketWriter.Outcome)
}

extension LaneMemberConnection where Self: SessionTransport {
    /// Through the connection's outbox, like any other delivery (which marks it queued by the loop).
    func queueFromLane(_ deliveries: ArraySlice<Delivery>) {
        for delivery in deliveries { send(delivery) }
    }
}

/// How a slot table's lanes frame messages: the wire protocol, `batch` frames, permessage-deflate.
struct LaneFormat: Hashable, Sendable {
    enum Codec: Sendable {
        /// Native JSON frames (SPEC §3).
        case native
        /// Socket.IO event packets over Engine.IO's WebSocket transport (SPEC §9).
        case socketIO
    }

    var codec: Codec = .native
    /// Consecutive messages as one `batch` frame (`?batch=true`, native only).
    var batches = false
    /// The members negotiated permessage-deflate (SPEC §12).
    var compressed = false

    static let all: [LaneFormat] = [Codec.native, .socketIO].flatMap { codec in
        [false, true].flatMap { compressed in
            (codec == .native ? [false, true] : [false]).map { LaneFormat(codec: codec, batches: $0, compressed: compressed) }
        }
    }
}

extension LaneFormat.Codec {
    /// The frame a recipient speaking this codec gets for `delivery`: a message's frame in the codec, or a
    /// reply's own (already in its codec); the shared compressed one when `deflater` is given and it pays. Every
    /// one of them built once per delivery and shared by all recipients (SPEC §9, §12).
    func frame(of delivery: Delivery, deflater: MessageDeflater?, counting compressed: inout CompressedBytes) -> ByteBuffer {
        switch self {
        case .socketIO where delivery.isMessage:
            deflater?.socketIOFrame(of: delivery, counting: &compressed) ?? SocketIOCodec.messageFrame(of: delivery)
        default:
            // Native messages, and replies of either codec (a Socket.IO reply's payload is its Engine.IO packet).
            deflater?.frame(of: delivery, counting: &compressed) ?? delivery.frame
        }
    }
}

/// One event loop's slot tables, one per ``LaneFormat``: the connections of a table get the same frames.
struct LoopFanouts: Sendable {
    private let tables: [LaneFormat: LoopFanout]
    private let plain: LoopFanout

    /// - Parameter deflater: the loop's compressor; without one, compressing connections share the plain tables.
    init(eventLoop: any EventLoop, statistics: NodeStatistics, batchDelay: TimeAmount, deflater: MessageDeflater?) {
        var tables: [LaneFormat: LoopFanout] = [:]
        for format in LaneFormat.all where !format.compressed || deflater != nil {
            tables[format] = LoopFanout(
                eventLoop: eventLoop, statistics: statistics, format: format, gathering: format.batches ? batchDelay : nil,
                deflater: format.compressed ? deflater : nil)
        }
        self.plain = tables[LaneFormat()] ?? LoopFanout(eventLoop: eventLoop, statistics: statistics)
        self.tables = tables
    }

    /// The table for connections wanting `format` (its uncompressed twin when the loop has no compressor).
    subscript(format: LaneFormat) -> LoopFanout {
        var format = format
        if tables[format] == nil { format.compressed = false }
        return tables[format] ?? plain
    }
}

/// One event loop's connections as their channels' lanes (``ChannelLane``) reach them: a compact table with a
/// slot per connection, all of them getting the frames of one ``LaneFormat``.
///
/// A broadcast's cost per recipient is, apart from the `send` itself, mostly the first touch of each
/// recipient's objects (connection, outbox, queues), which the kernel's work between two sends has pushed out
/// of the caches. A slot is twelve bytes: while the connection allows direct writes (nothing of it queued by
/// the loop, nothing held by NIO, writable, not closing; see ``WebSocketConnection`` and ``SocketIOClient``)
/// it holds the socket's descriptor, and -1 otherwise. A lane writes to a slot's descriptor without touching
/// its connection, and hands the message to the connection only when the slot says no or the socket took
/// less than all.
///
/// Event-loop confined (`@unchecked Sendable`): the hub only keeps it as the lanes' ``FanoutGroup``.
final class LoopFanout: FanoutGroup, @unchecked Sendable {
    private struct Slot {
        /// The descriptor while direct writes are allowed, -1 otherwise.
        var descriptor: CInt = -1
        /// Bumped when the slot is released, so a lane never reaches its next owner through an old membership.
        var generation: UInt32 = 0
        /// Messages written by lanes (for the admin API's `messagesOut`).
        var messagesOut: UInt32 = 0
    }

    let eventLoop: any EventLoop
    let format: LaneFormat
    /// For `?batch=true` connections: how long a lane gathers messages before a pass, which writes them as one
    /// `batch` frame. Nil for plain connections (a pass starts at once, frames back to back).
    let gathering: TimeAmount?
    /// For connections that negotiated permessage-deflate: the loop's compressor, through which every member
    /// gets the shared compressed frames (SPEC §12). Nil for plain connections.
    let deflater: MessageDeflater?
    private let statistics: NodeStatistics
    private var slots: [Slot] = []
    private var owners: [(any LaneMemberConnection)?] = []
    private var freeSlots: [Int] = []

    init(
        eventLoop: any EventLoop, statistics: NodeStatistics, format: LaneFormat = LaneFormat(), gathering: TimeAmount? = nil,
        deflater: MessageDeflater? = nil
    ) {
        self.eventLoop = eventLoop
        self.format = format
        self.statistics = statistics
        self.gathering = gathering
        self.deflater = deflater
    }

    /// Runs a lane's next pass: at once for plain connections, after the gathering time for batch ones. Any thread.
    func schedulePass(_ pass: @escaping @Sendable () -> Void) {
        if let gathering, gathering > .zero {
            eventLoop.scheduleTask(in: gathering, pass)
        } else {
            eventLoop.execute(pass)
        }
    }

    /// The frames of one pass: one `batch` frame for batch connections when there are several messages.
    func batch(of deliveries: [Delivery]) -> LaneBatch {
        LaneBatch(deliveries, codec: format.codec, asOneBatchFrame: gathering != nil, deflater: deflater)
    }

    func makeLane() -> any FanoutLane {
        ChannelLane(fanout: self)
    }

    /// Gives `connection` a slot; returns its lane membership id. On the loop.
    func register(_ connection: any LaneMemberConnection) -> UInt64 {
        eventLoop.preconditionInEventLoop()
        let index: Int
        if let free = freeSlots.popLast() {
            index = free
            owners[index] = connection
        } else {
            index = slots.count
            slots.append(Slot())
            owners.append(connection)
        }
        return Self.member(index: index, generation: slots[index].generation)
    }

    /// Frees `member`'s slot: lanes that still list it skip it from now on. On the loop.
    func release(_ member: UInt64) {
        guard let index = index(of: member) else { return }
        slots[index].descriptor = -1
        slots[index].messagesOut = 0
        slots[index].generation &+= 1
        owners[index] = nil
        freeSlots.append(index)
    }

    /// Sets the descriptor lanes may write to directly (nil: none). On the loop.
    func setDirectDescriptor(_ descriptor: CInt?, of member: UInt64) {
        guard let index = index(of: member) else { return }
        slots[index].descriptor = descriptor ?? -1
    }

    /// Messages lanes wrote to `member`. On the loop.
    func messagesOut(of member: UInt64) -> Int {
        index(of: member).map { Int(slots[$0].messagesOut) } ?? 0
    }

    /// Writes `batch` to `members` (one slice of a lane). On the loop.
    ///
    /// A member whose slot allows direct writes, and who joined before the batch's first message, gets every
    /// frame in one `send`; the rest of a short write goes through its connection (and NIO). Any other member
    /// gets the messages it is due through its connection's outbox, behind what it already has queued.
    func write(_ batch: LaneBatch, to members: ArraySlice<ChannelLane.Member>) {
        var attempts = 0
        batch.frames.withUnsafeReadableBytes { bytes in
            for member in members {
                guard let index = index(of: member.id) else { continue }
                let descriptor = slots[index].descriptor
                // The connection is called with no access to the table open: it may change its slot, or close
                // and release it, from inside the call.
                guard descriptor >= 0, member.after < batch.firstSeq else {
                    let owner = owners[index]
                    owner?.queueFromLane(batch.deliveries.drop { $0.seq <= member.after })
                    continue
                }
                attempts += 1
                slots[index].messagesOut &+= UInt32(truncatingIfNeeded: batch.deliveries.count)
                let outcome = SocketWriter.send(bytes, to: descriptor)
                if case .complete = outcome { continue }
                let owner = owners[index]
                owner?.finishDirectWrite(batch.frames, outcome: outcome)
            }
        }
        guard attempts > 0 else { return }
        statistics.recordBytesOut(attempts * batch.frames.readableBytes)
        batch.compressed.record(in: statistics, copies: attempts)
    }

    /// Records the publish-to-write latency of a lane's pass, for its oldest message (the pass's worst case).
    func recordLatency(of batch: LaneBatch) {
        let now = NIODeadline.now().uptimeNanoseconds
        statistics.recordDeliveryLatency(nanoseconds: Int64(truncatingIfNeeded: now &- batch.deliveries[0].publishedAt))
    }

    /// The slot of a current membership; nil once released.
    private func index(of member: UInt64) -> Int? {
        let index = Int(truncatingIfNeeded: member & 0xFFFF_FFFF)
        guard index < slots.count, slots[index].generation == UInt32(truncatingIfNeeded: member >> 32) else { return nil }
        return index
    }

    private static func member(index: Int, generation: UInt32) -> UInt64 {
        UInt64(generation) << 32 | UInt64(index)
    }
}

/// Messages a lane writes in one pass, with their frames back to back or in one `batch` frame (shared by every
/// member either way).
struct LaneBatch {
    let deliveries: [Delivery]
    let frames: ByteBuffer
    /// Of ``frames``, the compressed ones' bytes and uncompressed size.
    let compressed: CompressedBytes

    /// - Parameters:
    ///   - deliveries: at least one, in `seq` order.
    ///   - codec: the members' wire protocol.
    ///   - asOneBatchFrame: several messages go as one `{"type":"batch"}` frame (a lone one as it is; native only).
    ///   - deflater: the loop's compressor, for members that negotiated permessage-deflate.
    init(_ deliveries: [Delivery], codec: LaneFormat.Codec = .native, asOneBatchFrame: Bool, deflater: MessageDeflater? = nil) {
        self.deliveries = deliveries
        var compressed = CompressedBytes()
        if deliveries.count == 1 {
            frames = codec.frame(of: deliveries[0], deflater: deflater, counting: &compressed)
        } else if asOneBatchFrame && codec == .native {
            let batch = BatchFrame.frame(of: deliveries)
            frames = deflater?.compressedFrame(ofFrame: batch, counting: &compressed) ?? batch
        } else {
            var frames = ByteBuffer()
            // The native frames' size: the others' are close to it (the buffer grows if need be).
            frames.reserveCapacity(deliveries.reduce(0) { $0 + $1.frame.readableBytes })
            for delivery in deliveries {
                frames.writeImmutableBuffer(codec.frame(of: delivery, deflater: deflater, counting: &compressed))
            }
            self.frames = frames
        }
        self.compressed = compressed
    }

    var firstSeq: UInt64 { deliveries[0].seq }
}
