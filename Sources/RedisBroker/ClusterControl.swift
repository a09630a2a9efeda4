public import NIOCore
public import RedisClient

/// Commands every node must carry out (SPEC §8: disconnects by id, user or IP and IP blocks apply on every
/// node within 1 s), sent on one control channel, and blocks stored with their expiry so that nodes that start
/// later (or reconnect) load them.
public struct ClusterControl: Sendable {
    /// One command, from the node that took the admin's request.
    public enum Command: Sendable, Equatable {
        case disconnectConnection(id: String, reason: String)
        case disconnectUser(id: String, reason: String)
        case disconnectIP(String, reason: String)
        /// Block an IP for `seconds` (also stored, see ``block(_:for:reason:origin:on:)``).
        case block(ip: String, seconds: Int, reason: String)
    }

    public let prefix: String

    public init(prefix: String) {
        self.prefix = prefix
    }

    /// The control channel every node subscribes to.
    public var channel: String { "\(prefix)control" }

    func blockKey(_ ip: String) -> String { "\(prefix)block:\(ip)" }

    /// A command on the wire: `<origin node>\n<kind>\n<field>\n<field>...` (fields may not contain newlines;
    /// ids, IPs and reasons never do once validated).
    static func encode(_ command: Command, origin: String) -> String {
        let fields: [String] = switch command {
        case .disconnectConnection(let id, let reason): ["connection", id, reason]
        case .disconnectUser(let id, let reason): ["user", id, reason]
        case .disconnectIP(let ip, let reason): ["ip", ip, reason]
        case .block(let ip, let seconds, let reason): ["block", ip, String(seconds), reason]
        }
        return ([origin] + fields.map { $0.replacingNewlines() }).joined(separator: "\n")
    }

    /// The origin node and the command of a control message; nil when it is not one.
    public static func decode(_ payload: ByteBuffer) -> (origin: String, command: Command)? {
        let fields = String(buffer: payload).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard fields.count >= 4 else { return nil }
        let origin = fields[0]
        switch (fields[1], fields.count) {
        case ("connection", 4): return (origin, .disconnectConnection(id: fields[2], reason: fields[3]))
        case ("user", 4): return (origin, .disconnectUser(id: fields[2], reason: fields[3]))
        case ("ip", 4): return (origin, .disconnectIP(fields[2], reason: fields[3]))
        case ("block", 5):
            guard let seconds = Int(fields[3]), seconds > 0 else { return nil }
            return (origin, .block(ip: fields[2], seconds: seconds, reason: fields[4]))
        default: return nil
        }
    }

    /// Sends `command` to every node (the sender skips its own by `origin`).
    public func send(_ command: Command, origin: String, on connection: RedisConnection) async throws {
        _ = try await connection.send(["PUBLISH", RESPArgument(channel), RESPArgument(Self.encode(command, origin: origin))])
    }

    /// Stores a block with its expiry and tells every node, in one round trip.
    public func block(_ ip: String, for seconds: Int, reason: String, origin: String, on connection: RedisConnection) async throws {
        let replies = try await connection.pipeline([
            ["SET", RESPArgument(blockKey(ip)), RESPArgument(reason.replacingNewlines()), "EX", RESPArgument(seconds)],
            ["PUBLISH", RESPArgument(channel), RESPArgument(Self.encode(.block(ip: ip, seconds: seconds, reason: reason), origin: origin))],
        ])
        if case .error(let message) = replies[0] { throw RedisClientError.server(message) }
    }

    /// The blocks in force, with the seconds each has left (for a node that starts or reconnects).
    public func storedBlocks(on connection: RedisConnection) async throws -> [(ip: String, seconds: Int, reason: String)] {
        let keys = try await NodeRegistry(prefix: prefix).scan(match: "\(prefix)block:*", on: connection)
        guard !keys.isEmpty else { return [] }
        let replies = try await connection.pipeline(keys.flatMap { key -> [[RESPArgument]] in
            [["GET", RESPArgument(key)], ["PTTL", RESPArgument(key)]]
        })
        var blocks: [(ip: String, seconds: Int, reason: String)] = []
        for (index, key) in keys.enumerated() {
            guard let reason = replies[2 * index].string, let milliseconds = replies[2 * index + 1].integer, milliseconds > 0 else { continue }
            blocks.append((String(key.dropFirst("\(prefix)block:".count)), Int((milliseconds + 999) / 1000), reason))
        }
        return blocks
    }
}

extension String {
    fileprivate func replacingNewlines() -> String {
        String(map { $0.isNewline ? " " : $0 })
    }
}
