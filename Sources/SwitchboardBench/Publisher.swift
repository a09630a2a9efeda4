import Foundation
import NIOCore
import NIOPosix

/// Reads the answers on one HTTP/1.1 connection and counts them: the publisher's (`rate` messages a second,
/// pipelined, each carrying its sequence number `n` and send time `t` in monotonic ns) or the stats probe's.
// @unchecked Sendable: its counters are only touched on its channel's event loop and read through `loop.submit`.
final class PublisherHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var buffer = ByteBuffer()
    private(set) var answered = 0
    private(set) var failed = 0
    /// Completed with each response in turn (the stats probe sends one request at a time).
    var onResponse: ((_ succeeded: Bool) -> Void)?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        buffer.writeBuffer(&incoming)
        while true {
            let view = buffer.readableBytesView
            guard let end = view.firstRange(of: [13, 10, 13, 10]) else { break }
            let head = String(decoding: view[view.startIndex..<end.lowerBound], as: UTF8.self).lowercased()
            let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
            let total = end.upperBound - view.startIndex + length
            guard buffer.readableBytes >= total else { break }
            let succeeded = head.hasPrefix("http/1.1 2")
            if succeeded { answered += 1 } else { failed += 1 }
            onResponse?(succeeded)
            buffer.moveReaderIndex(forwardBy: total)
        }
        buffer.discardReadBytes()
    }
}

/// How a peer takes subscriptions and publishes.
enum Target: String, CaseIterable {
    case switchboard
    /// The Node `ws` peer (scripts/peers/ws-server.js).
    case ws
    /// nginx with nchan (scripts/peers/nchan.conf).
    case nchan
    /// Switchboard's Socket.IO endpoint over WebSocket (SPEC §9), published to like `switchboard`.
    case socketio
    /// NIO's floor (`SwitchboardBench floor-server`): subscribed to like `switchboard`; takes no publishes.
    case floor

    func upgradePath(channel: String, batch: Bool) -> String {
        switch self {
        case .switchboard: batch ? "/ws?batch=true" : "/ws"
        case .floor: "/ws"
        case .socketio: "/socket.io/?EIO=4&transport=websocket"
        case .ws: "/ws"
        case .nchan: "/sub/\(channel)"
        }
    }

    func subscribeMessage(channel: String) -> String? {
        switch self {
        case .switchboard, .ws, .floor: #"{"type":"subscribe","channel":"\#(channel)"}"#
        case .socketio: #"420["subscribe","\#(channel)"]"#
        case .nchan: nil
        }
    }

    /// A market quote whose prices move with `n` (so that no two compress alike), with `n` and `t` first.
    static func quote(n: Int, sentAt: UInt64) -> String {
        let last = 189.0 + Double(n % 997) / 100
        let volume = 48_000_000 + n * 37
        return #"{"n":\#(n),"t":\#(sentAt),"symbol":"AAPL","bid":\#(last - 0.01),"ask":\#(last + 0.01),"last":\#(last),"#
            + #""volume":\#(volume),"open":187.10,"high":\#(last + 0.6),"low":186.95,"change":\#(last - 187.10),"#
            + #""exchange":"XNAS","currency":"USD","venue":"consolidated","halted":false,"sequence":\#(918_273 + n)}"#
    }

    /// What a subscriber sends before subscribing, and the reply it waits for (Socket.IO's CONNECT).
    var handshake: (send: String, reply: String)? {
        self == .socketio ? ("40", "40{") : nil
    }

    /// The text that marks the subscribe's reply.
    var subscribedKey: String {
        self == .socketio ? "430[" : #""type":"subscribed""#
    }

    func publishRequest(channel: String, n: Int, sentAt: UInt64, token: String, padding: String, quote: Bool = false) -> ByteBuffer {
        let data = quote ? Self.quote(n: n, sentAt: sentAt) : #"{"n":\#(n),"t":\#(sentAt),"pad":"\#(padding)"}"#
        let (path, body, auth): (String, String, String) = switch self {
        case .switchboard, .socketio:
            ("/api/v1/websocket/broadcast", #"{"channel":"\#(channel)","event":"tick","data":\#(data)}"#, "Authorization: Bearer \(token)\r\n")
        case .ws, .floor: ("/publish", #"{"channel":"\#(channel)","event":"tick","data":\#(data)}"#, "")
        case .nchan: ("/pub/\(channel)", data, "")
        }
        return ByteBuffer(string: "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\(auth)Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
    }
}

/// Times `GET /api/v1/websocket/stats` during a run: one request at a time over one connection, every
/// `interval`, at most `limit` requests (so the probe itself stays a light, bounded load).
struct StatsProbe {
    let channel: any Channel
    let handler: PublisherHandler
    let request: ByteBuffer

    static func connect(port: Int, token: String, on loop: any EventLoop) async throws -> StatsProbe {
        let handler = PublisherHandler()
        let channel = try await ClientBootstrap(group: loop)
            .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) } }
            .connect(host: "127.0.0.1", port: port).get()
        let request = ByteBuffer(string:
            "GET /api/v1/websocket/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(token)\r\n\r\n")
        return StatsProbe(channel: channel, handler: handler, request: request)
    }

    /// Response times in nanoseconds of the requests answered with 2xx, until `isDone` or `limit` requests.
    /// Each is timed on the probe's event loop, from the write to the response: when the generator's CPU is
    /// saturated, the wait for a Swift task to resume would otherwise be counted as the server's.
    func run(every interval: Duration, limit: Int, until isDone: @escaping @Sendable () -> Bool) async throws -> [UInt64] {
        var times: [UInt64] = []
        for _ in 0..<limit where !isDone() {
            let time = try await channel.eventLoop.flatSubmit { [handler, channel, request] () -> EventLoopFuture<UInt64?> in
                let promise = channel.eventLoop.makePromise(of: UInt64?.self)
                let started = NIODeadline.now()
                handler.onResponse = { succeeded in
                    promise.succeed(succeeded ? (NIODeadline.now() - started).nanoseconds.magnitude : nil)
                }
                channel.writeAndFlush(request, promise: nil)
                return promise.futureResult
            }.get()
            if let time { times.append(time) }
            try await Task.sleep(for: interval)
        }
        return times
    }
}
