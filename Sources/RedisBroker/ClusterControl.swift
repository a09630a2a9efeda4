public import NIOCore
public import RedisClient
public import SwitchboardCore

/// Commands every node must carry out (SPEC §8: disconnects by id, user or IP and IP blocks apply on every
/// node within 1 s), sent on one control channel with the sender and a request id; each node answers on the
/// sender's own reply channel with how many connections it closed, so the sender can add them up (and answer
/// 404 only when no node had the connection). Blocks are also stored with their expiry, so that nodes that
/// start later (or reconnect) load them.
public struct ClusterControl: Sendable {
    /// A message on a control channel.
    public enum Message: Sendable, Equatable {
        /// A command from `origin`, to be answered with a ``reply``.
        case command(ClusterCommand, origin: String, request: String)
        /// What `responder` did for `request`: it closed `closed` connections.
        case reply(request: String, responder: String, closed: Int)
    }

    public let prefix: String

    public init(prefix: String) {
        self.prefix = prefix
    }

    /// The control channel every node subscribes to.
    public var channel: String { "\(prefix)control" }

    /// The channel a node hears replies on.
    public func replyChannel(of nodeId: String) -> String { "\(prefix)control-reply:\(nodeId)" }

    func blockKey(_ ip: String) -> String { "\(prefix)block:\(ip)" }

    /// A message on the wire: newline-separated fields (fields may not contain newlines: any in a reason are
    /// replaced by spaces; ids and IPs never contain them once validated).
    /// - `<origin>\n<request>\n<kind>\n<field>...` for a command;
    /// - `<responder>\n<request>\nreply\n<closed>` for a reply.
    static func encode(_ message: Message) -> String {
        let fields: [String] = switch message {
        case .command(let command, let origin, let request):
            switch command {
            case .disconnectConnection(let id, let reason): [origin, request, "connection", id, reason]
            case .disconnectUser(let id, let reason): [origin, request, "user", id, reason]
            case .disconnectIP(let ip, let reason): [origin, request, "ip", ip, reason]
            case .block(let ip, let seconds, let reason): [origin, request, "block", ip, String(seconds), reason]
            case .subscribeUser(let id, let channel): [origin, request, "subscribe", id, channel]
            case .unsubscribeUser(let id, let channel, let reason): [origin, request, "unsubscribe", id, channel, reason]
            }
        case .reply(let request, let responder, let closed): [responder, request, "reply", String(closed)]
        }
        return fields.map { $0.replacingNewlines() }.joined(separator: "\n")
    }

    /// The message of a control channel's payload; nil when it is not one.
    public static func decode(_ payload: ByteBuffer) -> Message? {
        let fields = String(buffer: payload).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard fields.count >= 4 else { return nil }
        let (sender, request) = (fields[0], fields[1])
        switch (fields[2], fields.count) {
        case ("connection", 5): return .command(.disconnectConnection(id: fields[3], reason: fields[4]), origin: sender, request: request)
        case ("user", 5): return .command(.disconnectUser(id: fields[3], reason: fields[4]), origin: sender, request: request)
        case ("ip", 5): return .command(.disconnectIP(fields[3], reason: fields[4]), origin: sender, request: request)
        case ("block", 6):
            guard let seconds = Int(fields[4]), (1...maxBlockSeconds).contains(seconds) else { return nil }
            return .command(.block(ip: fields[3], seconds: seconds, reason: fields[5]), origin: sender, request: request)
        case ("subscribe", 5): return .command(.subscribeUser(id: fields[3], channel: fields[4]), origin: sender, request: request)
        case ("unsubscribe", 6):
            return .command(.unsubscribeUser(id: fields[3], channel: fields[4], reason: fields[5]), origin: sender, request: request)
        case ("reply", 4):
            guard let closed = Int(fields[3]), (0...maxClosedPerReply).contains(closed) else { return nil }
            return .reply(request: request, responder: sender, closed: closed)
        default: return nil
        }
    }

    /// Most connections one node's reply may say it closed: no node holds more (a process opens at most a few
    /// million files), so a larger number is not a reply of ours and is refused before it is added up.
    static let maxClosedPerReply = 100_000_000
    /// Longest block a command may carry: ten years (the API allows far less).
    static let maxBlockSeconds = 315_360_000

    /// Sends `command` to every node (a block is also stored with its expiry), in one round trip.
    public func send(_ command: ClusterCommand, origin: String, request: String, on connection: RedisConnection) async throws {
        var commands: [[RESPArgument]] = []
        if case .block(let ip, let seconds, let reason) = command {
            commands.append(["SET", RESPArgument(blockKey(ip)), RESPArgument(reason.replacingNewlines()), "EX", RESPArgument(seconds)])
        }
        commands.append(["PUBLISH", RESPArgument(channel), RESPArgument(Self.encode(.command(command, origin: origin, request: request)))])
        let replies = try await connection.pipeline(commands)
        if case .error(let message) = replies[0] { throw RedisClientError.server(message) }
    }

    /// Answers `request` of `origin`.
    public func reply(to request: String, of origin: String, closed: Int, responder: String, on connection: RedisConnection) async throws {
        _ = try await connection.send([
            "PUBLISH", RESPArgument(replyChannel(of: origin)),
            RESPArgument(Self.encode(.reply(request: request, responder: responder, closed: closed))),
        ])
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
            // Redis's numbers are checked before arithmetic: a TTL past the longest block is not one we set.
            guard let reason = replies[2 * index].string, let milliseconds = replies[2 * index + 1].integer,
                (1...Int64(Self.maxBlockSeconds) * 1000).contains(milliseconds)
            else { continue }
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
