import CompressNIO
import Foundation
import Histogram
import NIOCore
import WebSocketTestClient

/// What the subscribers of one benchmark saw.
struct Tally: Sendable {
    var received = 0
    var duplicates = 0
    var outOfOrder = 0
    /// Bytes of data frames as received (headers included), and how many came compressed.
    var wireBytes = 0
    var compressedFrames = 0
    var latency = Histogram<UInt64>(highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three)
}

/// The tally of one audience, shared by its subscribers: one latency histogram (about 220 KB) per audience, not
/// one per connection, whose allocation was most of the generator's cost of a connect in a storm.
// @unchecked Sendable: used on its audience's event loop only.
final class SharedTally: @unchecked Sendable {
    var tally = Tally()
}

/// One benchmark subscriber: completes the upgrade, subscribes, then reads frames and records, for each
/// message, its sequence number `n` and latency from its send time `t` (monotonic ns in this process).
///
/// Frames are scanned in place for `"n":` and `"t":` (no JSON decoding), so the generator stays cheap; a
/// `batch` frame's messages are all counted. Confined to its channel's event loop.
// @unchecked Sendable: its state is only touched on its channel's event loop; tallies are read through `loop.submit`.
final class SubscriberHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let request: ByteBuffer
    private let subscribeMessage: ByteBuffer?
    /// Sent after the upgrade, before the subscribe message, which waits for `reply` (Socket.IO's CONNECT).
    private let handshake: (send: ByteBuffer, reply: [UInt8])?
    private var handshakeDone: Bool
    private let subscribedKey: [UInt8]
    /// Completed once the connection is subscribed: at the `subscribed` reply, or at the 101 for peers that
    /// subscribe by the upgrade's path (nchan).
    private let upgraded: EventLoopPromise<Void>
    private var buffer = ByteBuffer()
    private var isUpgraded = false
    private var isSubscribed = false
    /// The last `n` seen from each publisher (publisher `n % publishers`): each publisher's messages must arrive
    /// in its order; several publishers' are interleaved however the servers took them.
    private var lastSeen: [Int]
    /// What this subscriber saw goes into its audience's tally.
    private let shared: SharedTally

    /// Inflates permessage-deflate frames (`--deflate`); shared by the subscribers of one loop.
    private let inflater: MessageInflater?

    /// Whether a `subscribed` reply comes (sent for the subscribe message, or for the upgrade's `?subscribe=`).
    private let awaitsSubscribed: Bool

    init(
        request: ByteBuffer, subscribeMessage: ByteBuffer?, awaitsSubscribed: Bool, upgraded: EventLoopPromise<Void>, tally: SharedTally,
        publishers: Int = 1,
        handshake: (send: String, reply: String)? = nil, subscribedKey: String = #""type":"subscribed""#,
        inflater: MessageInflater? = nil
    ) {
        self.inflater = inflater
        self.shared = tally
        self.handshake = handshake.map { (ByteBuffer(string: $0.send), Array($0.reply.utf8)) }
        self.handshakeDone = handshake == nil
        self.subscribedKey = Array(subscribedKey.utf8)
        self.lastSeen = Array(repeating: 0, count: max(1, publishers))
        self.request = request
        self.subscribeMessage = subscribeMessage
        self.awaitsSubscribed = awaitsSubscribed
        self.upgraded = upgraded
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(request), promise: nil)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        upgraded.fail(ChannelError.eof)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        upgraded.fail(error)
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if !isUpgraded {
            buffer.writeBuffer(&incoming)
            let head = buffer.withUnsafeReadableBytes { bytes in
                (end: Bytes.offset(of: Bytes.headEnd, in: bytes), switching: Bytes.starts(bytes, with: Bytes.switching))
            }
            guard let end = head.end else { return }
            guard head.switching else {
                upgraded.fail(ChannelError.inappropriateOperationForState)
                context.close(promise: nil)
                return
            }
            buffer.moveReaderIndex(forwardBy: end + Bytes.headEnd.count)
            isUpgraded = true
            if let handshake {
                context.writeAndFlush(wrapOutboundOut(WireParser.clientFrame(opcode: 0x1, payload: handshake.send.readableBytesView)), promise: nil)
            } else if let subscribeMessage {
                context.writeAndFlush(wrapOutboundOut(WireParser.clientFrame(opcode: 0x1, payload: subscribeMessage.readableBytesView)), promise: nil)
            }
            if !awaitsSubscribed {
                isSubscribed = true
                upgraded.succeed()
            }
        }
        // Most reads hold whole frames: scan them where NIO read them, and keep only a partial frame's bytes.
        if buffer.readableBytes == 0 {
            scanFrames(in: &incoming, context: context)
            if incoming.readableBytes > 0 { buffer.writeBuffer(&incoming) }
        } else {
            buffer.writeBuffer(&incoming)
            scanFrames(in: &buffer, context: context)
            buffer.discardReadBytes()
        }
    }

    /// Reads every complete frame of `frames` (counting, timing, answering pings); leaves a partial one.
    private func scanFrames(in frames: inout ByteBuffer, context: ChannelHandlerContext) {
        let now = NIODeadline.now().uptimeNanoseconds
        while let (opcode, payloadRange) = Frames.next(in: frames) {
            if (opcode == 0x1 || opcode == 0x2) && isSubscribed {
                shared.tally.wireBytes += payloadRange.upperBound
            }
            if (opcode == 0x1 || opcode == 0x2), let inflater,
                let first = frames.getInteger(at: frames.readerIndex, as: UInt8.self), first & 0x40 != 0
            {
                shared.tally.compressedFrames += 1
                let compressed = frames.getSlice(at: frames.readerIndex + payloadRange.lowerBound, length: payloadRange.count) ?? ByteBuffer()
                let text = inflater.inflate(compressed)
                text.withUnsafeReadableBytes { record($0, now: now) }
            } else if opcode == 0x1 || opcode == 0x2 {
                let reply = frames.withUnsafeReadableBytes { bytes -> ByteBuffer? in
                    let payload = UnsafeRawBufferPointer(rebasing: bytes[payloadRange])
                    // Engine.IO: the server pings with a `2` packet, answered `3`.
                    if handshake != nil && payload.count == 1 && payload[0] == UInt8(ascii: "2") { return ByteBuffer(string: "3") }
                    if !handshakeDone, let handshake, Bytes.starts(payload, with: handshake.reply) {
                        handshakeDone = true
                        return subscribeMessage
                    }
                    if !isSubscribed && Bytes.offset(of: subscribedKey, in: payload) != nil {
                        isSubscribed = true
                        upgraded.succeed()
                    }
                    record(payload, now: now)
                    return nil
                }
                if let reply {
                    context.writeAndFlush(wrapOutboundOut(WireParser.clientFrame(opcode: 0x1, payload: reply.readableBytesView)), promise: nil)
                }
            } else if opcode == 0x9 {
                let payload = frames.getSlice(at: frames.readerIndex + payloadRange.lowerBound, length: payloadRange.count) ?? ByteBuffer()
                context.writeAndFlush(wrapOutboundOut(WireParser.clientFrame(opcode: 0xA, payload: payload.readableBytesView)), promise: nil)
            }
            frames.moveReaderIndex(forwardBy: payloadRange.upperBound)
        }
    }

    /// Finds every `"n":N ... "t":T` pair in a payload and records it.
    private func record(_ payload: UnsafeRawBufferPointer, now: UInt64) {
        var index = 0
        var received = 0, duplicates = 0, outOfOrder = 0
        while let n = Self.number(after: Self.nKey, in: payload, from: &index) {
            guard let sent = Self.number(after: Self.tKey, in: payload, from: &index) else { break }
            received += 1
            let stream = n % lastSeen.count
            let last = lastSeen[stream]
            if n == last {
                duplicates += 1
            } else if n < last {
                outOfOrder += 1
            } else {
                lastSeen[stream] = n
            }
            _ = shared.tally.latency.record(now > UInt64(sent) ? now - UInt64(sent) : 0)
        }
        if received > 0 {
            shared.tally.received += received
            shared.tally.duplicates += duplicates
            shared.tally.outOfOrder += outOfOrder
        }
    }

    /// `"n":` and `"t":` as one little-endian word each: a key is found by one 4-byte compare per position.
    private static let nKey = UInt32(0x3A_22_6E_22)
    private static let tKey = UInt32(0x3A_22_74_22)

    /// The decimal number after the next `key` at or after `index`; moves `index` past it.
    private static func number(after key: UInt32, in bytes: UnsafeRawBufferPointer, from index: inout Int) -> Int? {
        let count = bytes.count
        guard count >= 4 else { return nil }
        while index <= count - 4 {
            if bytes[index] == 0x22, bytes.loadUnaligned(fromByteOffset: index, as: UInt32.self) == key {
                index += 4
                var value = 0
                while index < count, bytes[index] >= 48, bytes[index] <= 57 {
                    value = value &* 10 &+ Int(bytes[index] &- 48)
                    index += 1
                }
                return value
            }
            index += 1
        }
        return nil
    }
}

/// One loop's permessage-deflate decompressor for the generator's subscribers (`--deflate`).
// @unchecked Sendable: used on its subscribers' event loop only.
final class MessageInflater: @unchecked Sendable {
    private let decompressor: ZlibDecompressor

    init() throws {
        decompressor = try ZlibDecompressor(algorithm: .deflate)
    }

    /// A compressed message's text (RFC 7692 §7.2.2); whatever inflated before an error. The output grows as
    /// needed: a `batch` frame of many quotes inflates to far more than a few times its size.
    func inflate(_ payload: ByteBuffer) -> ByteBuffer {
        defer { try? decompressor.reset() }
        var input = payload
        input.writeBytes([0x00, 0x00, 0xFF, 0xFF])
        var output = ByteBuffer()
        output.reserveCapacity(payload.readableBytes * 8 + 256)
        while true {
            do {
                try decompressor.inflate(from: &input, to: &output)
                return output
            } catch let error as CompressNIOError where error == .bufferOverflow {
                output.reserveCapacity(output.capacity * 2)
            } catch {
                // `.inputBufferOverflow`: every byte read, the message is complete; anything else: what came out.
                return output
            }
        }
    }
}

/// Zero-copy frame scanning for the generator (client frames come from `WireParser.clientFrame`).
enum Frames {
    /// The next complete frame: its opcode and payload range relative to the reader index.
    static func next(in buffer: ByteBuffer) -> (opcode: UInt8, payload: Range<Int>)? {
        let base = buffer.readerIndex
        guard let first = buffer.getInteger(at: base, as: UInt8.self), let second = buffer.getInteger(at: base + 1, as: UInt8.self) else {
            return nil
        }
        var length = Int(second & 0x7F)
        var header = 2
        if length == 126 {
            guard let extended = buffer.getInteger(at: base + 2, as: UInt16.self) else { return nil }
            length = Int(extended)
            header = 4
        } else if length == 127 {
            guard let extended = buffer.getInteger(at: base + 2, as: UInt64.self) else { return nil }
            length = Int(extended)
            header = 10
        }
        guard buffer.readableBytes >= header + length else { return nil }
        return (first & 0x0F, header..<(header + length))
    }
}

/// Byte searches for the generator's hot path: the standard library's generic `firstRange(of:)` and
/// `starts(with:)` were a third of its CPU per connection in a storm.
enum Bytes {
    static let headEnd: [UInt8] = [13, 10, 13, 10]
    static let switching = Array("HTTP/1.1 101".utf8)

    /// Where `needle` first occurs in `bytes`.
    static func offset(of needle: [UInt8], in bytes: UnsafeRawBufferPointer) -> Int? {
        guard let first = needle.first, bytes.count >= needle.count else { return nil }
        var index = 0
        while index <= bytes.count - needle.count {
            if bytes[index] == first, starts(UnsafeRawBufferPointer(rebasing: bytes[index...]), with: needle) { return index }
            index += 1
        }
        return nil
    }

    static func starts(_ bytes: UnsafeRawBufferPointer, with prefix: [UInt8]) -> Bool {
        guard let base = bytes.baseAddress, bytes.count >= prefix.count else { return prefix.isEmpty }
        return prefix.withUnsafeBytes { key in key.baseAddress.map { memcmp(base, $0, key.count) == 0 } ?? true }
    }
}
