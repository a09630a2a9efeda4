import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// The server side of the WebSocket opening handshake (RFC 6455 §4.2), for NIO's typed upgrade handler.
///
/// Written here rather than using `NIOTypedWebSocketServerUpgrader` because that one always installs
/// NIO's frame encoder, which cannot be removed; our connections write pre-framed bytes instead.
struct WebSocketUpgrader<Result: Sendable>: NIOTypedHTTPServerProtocolUpgrader {
    typealias UpgradeResult = Result

    /// Runs the admission checks; `nil` refuses the upgrade.
    let shouldUpgrade: @Sendable (any Channel, HTTPRequestHead) -> EventLoopFuture<HTTPHeaders?>
    /// Installs the connection handler after the `101` response went out.
    let upgradePipelineHandler: @Sendable (any Channel, HTTPRequestHead) -> EventLoopFuture<Result>

    var supportedProtocol: String { "websocket" }
    // Like NIO's own upgrader: the key and version are checked in buildUpgradeResponse, not listed in `Connection`.
    var requiredUpgradeHeaders: [String] { [] }

    func buildUpgradeResponse(
        channel: any Channel, upgradeRequest: HTTPRequestHead, initialResponseHeaders: HTTPHeaders
    ) -> EventLoopFuture<HTTPHeaders> {
        // `shouldUpgrade` runs first and refuses bad handshakes itself (NIO would drop the request on a failure here).
        shouldUpgrade(channel, upgradeRequest).flatMapThrowing { extraHeaders in
            guard var headers = extraHeaders, let key = WebSocketHandshake.key(of: upgradeRequest) else {
                throw NIOWebSocketUpgradeError.unsupportedWebSocketTarget
            }
            headers.replaceOrAdd(name: "Upgrade", value: "websocket")
            headers.replaceOrAdd(name: "Connection", value: "upgrade")
            headers.add(name: "Sec-WebSocket-Accept", value: WebSocketHandshake.accept(forKey: key))
            return headers
        }
    }

    func upgrade(channel: any Channel, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<Result> {
        // The connection handler parses frames itself (no NIO frame decoder stage: see InboundFrameParser).
        upgradePipelineHandler(channel, upgradeRequest)
    }
}

/// Checks of the client's opening handshake (RFC 6455 §4.2.1).
enum WebSocketHandshake {
    /// The `Sec-WebSocket-Key` of a valid version-13 handshake (RFC 6455 §4.2.1), or nil.
    static func key(of request: HTTPRequestHead) -> String? {
        let keys = request.headers["Sec-WebSocket-Key"]
        guard keys.count == 1, let key = keys.first, Data(base64Encoded: key)?.count == 16,
            request.headers["Sec-WebSocket-Version"] == ["13"]
        else { return nil }
        return key
    }

    /// The `Sec-WebSocket-Accept` answer to `key` (RFC 6455 §4.2.2).
    static func accept(forKey key: String) -> String {
        // Hashed from the key's bytes and the GUID's in place: no joined string or `Data` per connection.
        var hasher = Insecure.SHA1()
        var key = key
        key.withUTF8 { hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }
        hasher.update(bufferPointer: UnsafeRawBufferPointer(start: guid.utf8Start, count: guid.utf8CodeUnitCount))
        return Data(hasher.finalize()).base64EncodedString()
    }

    private static let guid: StaticString = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
}
