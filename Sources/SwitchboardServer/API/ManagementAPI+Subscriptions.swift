import Hummingbird
import SwitchboardCore

/// SPEC §14's server-side subscriptions: the platform's backend subscribes a user's connections to a channel, or
/// removes them, on every node. The backend's word: namespace rules, grants and the subscribe proxy are not asked;
/// the channel must be valid and its namespace exist, and each connection's subscription limit holds.
extension ManagementAPI {
    /// What an unsubscribed client is told when the backend gives no reason.
    static let defaultUnsubscribeReason = "removed by the server"

    /// `POST /api/v1/websocket/subscribe` `{"userId","channel"}` → `{"connections":n}`.
    func subscribeUser(_ request: Request, _ context: APIContext) async throws -> Response {
        _ = try await requireAdmin(request, context)
        let (userId, channel, _) = try subscriptionBody(try await Self.jsonBody(of: request), needsReason: false)
        var reached = node.subscribeByServer(userId: userId, to: channel)
        if let cluster = node.cluster { reached += await performed(.subscribeUser(id: userId, channel: channel), in: cluster) }
        return Self.json(.object(["connections": .int(Int64(reached))]))
    }

    /// `POST /api/v1/websocket/unsubscribe` `{"userId","channel","reason"?}` → `{"connections":n}`; each client gets
    /// `unsubscribed` with the reason.
    func unsubscribeUser(_ request: Request, _ context: APIContext) async throws -> Response {
        _ = try await requireAdmin(request, context)
        let (userId, channel, reason) = try subscriptionBody(try await Self.jsonBody(of: request), needsReason: true)
        var reached = node.unsubscribeByServer(userId: userId, from: channel, reason: reason)
        if let cluster = node.cluster {
            reached += await performed(.unsubscribeUser(id: userId, channel: channel, reason: reason), in: cluster)
        }
        return Self.json(.object(["connections": .int(Int64(reached))]))
    }

    /// The body's user, channel (valid, of a namespace that exists) and reason.
    private func subscriptionBody(_ body: JSONValue, needsReason: Bool) throws -> (userId: String, channel: String, reason: String) {
        guard body.isObject else { throw APIError.badRequest("body: must be a JSON object") }
        guard case .string(let userId)? = body["userId"], ChannelName("user:\(userId)") != nil else {
            throw APIError.badRequest("userId: required, a string matching [A-Za-z0-9_.-]+")
        }
        guard case .string(let channel)? = body["channel"] else { throw APIError.badRequest("channel: required, a string") }
        do {
            _ = try node.hub.directory.resolve(channel)
        } catch {
            throw APIError(
                status: .badRequest, code: error.reason == .unknownNamespace ? .unknownChannel : .badRequest, message: "channel: \(error.message)")
        }
        let reason: String
        switch body["reason"] {
        case nil: reason = Self.defaultUnsubscribeReason
        case .string(let given)? where needsReason && given.utf8.count <= 120: reason = given
        default: throw APIError.badRequest(needsReason ? "reason: a string of at most 120 bytes" : "reason: only unsubscribe takes one")
        }
        return (userId, channel, reason)
    }
}
