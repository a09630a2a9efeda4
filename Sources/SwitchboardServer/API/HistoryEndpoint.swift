import Hummingbird
import NIOCore
import SwitchboardCore

/// `GET /api/v1/websocket/history/{channel}?since=N&epoch=E`: what a channel holds, for a client that polls for
/// what it missed instead of keeping a WebSocket (SPEC §5's recovery over HTTP).
///
/// The caller needs what a `subscribe` to the channel needs (its token's role, tier and user; anonymous where
/// the node allows it). The answer is `{"epoch","seq","recovered","messages":[…]}`: the current stream's epoch
/// (null when the node holds no stream of the channel) and last `seq`; with `since`, `recovered` by the rule of
/// `subscribe` (the position is in the current stream and every later message is held) and then the messages
/// after it, in order; otherwise (or without `since`) every message held, as a fresh start. In cluster mode the
/// channel is read from Redis first when this node has not seen it whole, so every node answers the same.
extension ManagementAPI {
    func history(_ request: Request, _ context: APIContext) async throws -> Response {
        let identity = try await self.identity(of: request, context)
        guard identity != nil || node.settings.allowAnonymous else {
            throw APIError.unauthorized("this node does not allow anonymous access: send Authorization: Bearer <token>")
        }
        let name = try Self.pathParameter("channel", of: context)
        let namespace: Namespace
        do throws(ChannelAccessError) {
            (_, namespace) = try node.hub.directory.authorizeSubscribe(name, by: identity ?? .anonymous)
        } catch {
            switch error.reason {
            case .forbidden: throw APIError.forbidden(error.message)
            case .badName, .unknownNamespace: throw APIError.badRequest(error.message)
            }
        }
        let query = request.uri.queryParameters
        var since: UInt64?
        if let text = query["since"] {
            guard let value = UInt64(String(text)) else { throw APIError.badRequest("since: '\(text)' is not a seq (0 or more)") }
            since = value
        }
        let epoch = query["epoch"].map(String.init)
        if epoch != nil && since == nil { throw APIError.badRequest("epoch: only with since") }
        if let cluster = node.cluster, cluster.needsPreparation(channel: name, namespace: namespace) {
            await cluster.prepare(channel: name, namespace: namespace, forSubscriber: false)
        }
        return Self.historyResponse(node.hub.history(of: name, since: since, epoch: epoch))
    }

    /// The body, with the held messages' JSON as they are (they were encoded once, at publish).
    static func historyResponse(_ history: Hub.History) -> Response {
        var body = ByteBuffer()
        body.writeString(#"{"epoch":"#)
        body.writeString(history.epoch.map { JSONValue.string($0).jsonText } ?? "null")
        body.writeString(#","seq":\#(history.seq)"#)
        if let recovered = history.recovered { body.writeString(#","recovered":\#(recovered)"#) }
        body.writeString(#","messages":["#)
        for (index, message) in history.messages.enumerated() {
            if index > 0 { body.writeString(",") }
            body.writeImmutableBuffer(message)
        }
        body.writeString("]}")
        return Response(
            status: .ok, headers: [.contentType: "application/json", .contentLength: "\(body.readableBytes)"],
            body: .init(byteBuffer: body))
    }
}
