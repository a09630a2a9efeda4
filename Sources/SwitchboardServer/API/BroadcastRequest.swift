import SwitchboardCore

/// A broadcast body (SPEC §6): `event`, `data`, optional `key`, and exactly one target of `channel`,
/// `userId`, `all: true`.
struct BroadcastRequest: Sendable {
    let target: Publisher.Target
    /// The publication on its target's channel, resolved once, here.
    let resolved: Publisher.Resolved
    var publication: Publication { resolved.publication }

    /// Most messages in one `broadcast/batch` request.
    static let maxBatch = 1_000

    /// Validates one body; the error message names the field.
    init(_ body: JSONValue, publisher: Publisher) throws(FieldError) {
        guard case .object(let fields) = body else { throw FieldError("body must be a JSON object") }
        guard case .string(let event)? = fields["event"], !event.isEmpty else {
            throw FieldError("event: required, a non-empty string")
        }
        if let refusal = Publication.refusal(ofEvent: event) { throw FieldError("event: \(refusal)") }
        guard let data = fields["data"] else { throw FieldError("data: required") }
        let key: String?
        switch fields["key"] {
        case nil: key = nil
        case .string(let value)?: key = value
        default: throw FieldError("key: must be a string")
        }
        // A target field that is present must be well-typed: `userId: false` is an error, not "no userId".
        let given = ["channel", "userId", "all"].filter { fields[$0] != nil }
        guard given.count == 1 else {
            throw FieldError("target: exactly one of channel, userId or all: true is required")
        }
        switch (fields["channel"], fields["userId"], fields["all"]) {
        case (.string(let channel)?, _, _):
            target = .channel(channel)
        case (_, .string(let userId)?, _):
            guard ChannelName("user:\(userId)") != nil else { throw FieldError("userId: must match [A-Za-z0-9_.-]+") }
            target = .user(userId)
        case (_, _, .bool(true)?):
            target = .all
        default:
            throw FieldError("\(given[0]): channel and userId must be strings, all must be true")
        }
        do {
            resolved = try publisher.resolve(Publication(channel: "", event: event, data: data.jsonText, key: key), to: target)
        } catch {
            guard case .target(let refusal) = error else { throw FieldError(error.message, code: error.code) }
            throw FieldError("\(given[0]): \(refusal.message)", code: refusal.reason == .unknownNamespace ? .unknownChannel : .badRequest)
        }
    }

    /// The namespace the audit trail counts this broadcast under: the channel's, `user` or `all`.
    var auditNamespace: String {
        switch target {
        case .channel(let name): ChannelName(name).map { String($0.namespace) } ?? name
        case .user: "user"
        case .all: "all"
        }
    }

    /// A body that failed validation, with the error code it answers with.
    struct FieldError: Error {
        let message: String
        let code: ErrorCode
        init(_ message: String, code: ErrorCode = .badRequest) {
            self.message = message
            self.code = code
        }
    }
}
