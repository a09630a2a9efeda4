import Foundation
import NIOCore
import NIOPosix

/// Publishes `rate` messages a second over one pipelined HTTP/1.1 connection, each carrying its sequence
/// number `n` and send time `t` (monotonic ns), and counts the answers.
// @unchecked Sendable: its counters are only touched on its channel's event loop and read through `loop.submit`.
final class PublisherHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var buffer = ByteBuffer()
    private(set) var answered = 0
    private(set) var failed = 0

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
            if head.hasPrefix("http/1.1 2") { answered += 1 } else { failed += 1 }
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

    func upgradePath(channel: String, batch: Bool) -> String {
        switch self {
        case .switchboard: batch ? "/ws?batch=true" : "/ws"
        case .ws: "/ws"
        case .nchan: "/sub/\(channel)"
        }
    }

    func subscribeMessage(channel: String) -> String? {
        switch self {
        case .switchboard, .ws: #"{"type":"subscribe","channel":"\#(channel)"}"#
        case .nchan: nil
        }
    }

    func publishRequest(channel: String, n: Int, sentAt: UInt64, token: String, padding: String) -> ByteBuffer {
        let data = #"{"n":\#(n),"t":\#(sentAt),"pad":"\#(padding)"}"#
        let (path, body, auth): (String, String, String) = switch self {
        case .switchboard:
            ("/api/v1/websocket/broadcast", #"{"channel":"\#(channel)","event":"tick","data":\#(data)}"#, "Authorization: Bearer \(token)\r\n")
        case .ws: ("/publish", #"{"channel":"\#(channel)","event":"tick","data":\#(data)}"#, "")
        case .nchan: ("/pub/\(channel)", data, "")
        }
        return ByteBuffer(string: "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\(auth)Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
    }
}
