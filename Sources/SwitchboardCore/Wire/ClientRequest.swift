import NIOCore

/// The `id` a client put on a request, echoed on the reply (SPEC §3): a string or an integer.
public enum RequestID: Sendable, Hashable {
    case string(String)
    case int(Int64)
}

/// One decoded client -> server message (SPEC §3's table).
public struct ClientRequest: Sendable, Equatable {
    public enum Command: Sendable, Equatable {
        case auth(token: String)
        /// `{"type":"auth","data":{…}}`: the platform's own credentials, for its connect proxy (SPEC §14).
        case authWithData(JSONValue)
        /// `since` and `epoch`: the client's position in the channel's stream, for recovery (SPEC §5).
        case subscribe(channel: String, since: UInt64?, epoch: String?)
        case unsubscribe(channel: String)
        case publish(channel: String, event: String, data: String, key: String?)
        case ping
    }

    public var id: RequestID?
    public var command: Command

    public init(id: RequestID?, command: Command) {
        self.id = id
        self.command = command
    }
}

extension RequestID {
    /// Reads an `id` field: nil when absent or null; an error when it has a type an id cannot have.
    static func read(_ field: JSONValue?) throws(ClientRequestError) -> RequestID? {
        switch field {
        case nil, .null?: return nil
        case .string(let text)?: return .string(text)
        case .int(let number)?: return .int(number)
        default: throw ClientRequestError(id: nil, message: "field 'id' must be a string or an integer")
        }
    }
}

/// A client message that could not be decoded: `BAD_REQUEST`, with the `id` when it could be read.
public struct ClientRequestError: Error, Sendable, Equatable {
    public var id: RequestID?
    public var message: String

    public init(id: RequestID?, message: String) {
        self.id = id
        self.message = message
    }
}

extension ClientRequest {
    /// Decodes one text frame's payload. Never throws anything but ``ClientRequestError``.
    public static func decode(_ bytes: some Collection<UInt8>) throws(ClientRequestError) -> ClientRequest {
        let value: JSONValue
        do {
            value = try JSONValue.parse(bytes)
        } catch {
            throw ClientRequestError(id: nil, message: error.message)
        }
        guard case .object(let fields) = value else {
            throw ClientRequestError(id: nil, message: "a message must be a JSON object")
        }
        let id = try RequestID.read(fields["id"])
        let reader = FieldReader(fields: fields, id: id)
        let command: Command
        switch fields["type"] {
        case .string("auth")?:
            if fields["token"] == nil, let data = fields["data"], data.isObject {
                command = .authWithData(data)
            } else {
                command = .auth(token: try reader.string("token"))
            }
        case .string("subscribe")?:
            command = .subscribe(
                channel: try reader.string("channel"), since: try reader.sequenceNumber("since"), epoch: try reader.optionalString("epoch"))
        case .string("unsubscribe")?:
            command = .unsubscribe(channel: try reader.string("channel"))
        case .string("publish")?:
            guard let data = fields["data"] else { throw reader.error("missing field 'data'") }
            let event = try reader.string("event")
            if let refusal = Publication.refusal(ofEvent: event) { throw reader.error(refusal) }
            command = .publish(channel: try reader.string("channel"), event: event, data: data.jsonText, key: try reader.optionalString("key"))
        case .string("ping")?:
            command = .ping
        case .string(let other)?:
            throw reader.error("unknown type '\(other.prefix(64))'")
        case nil:
            throw reader.error("missing field 'type'")
        default:
            throw reader.error("field 'type' must be a string")
        }
        return ClientRequest(id: id, command: command)
    }

    /// Typed access to a message's fields with errors that name the field.
    private struct FieldReader {
        let fields: [String: JSONValue]
        let id: RequestID?

        func error(_ message: String) -> ClientRequestError { ClientRequestError(id: id, message: message) }

        func string(_ name: String) throws(ClientRequestError) -> String {
            guard let value = try optionalString(name) else { throw error("missing field '\(name)'") }
            return value
        }

        func optionalString(_ name: String) throws(ClientRequestError) -> String? {
            switch fields[name] {
            case nil, .null?: return nil
            case .string(let value)?: return value
            default: throw error("field '\(name)' must be a string")
            }
        }

        func sequenceNumber(_ name: String) throws(ClientRequestError) -> UInt64? {
            switch fields[name] {
            case nil, .null?: return nil
            case .int(let value)? where value >= 0: return UInt64(value)
            default: throw error("field '\(name)' must be a non-negative integer")
            }
        }
    }
}
