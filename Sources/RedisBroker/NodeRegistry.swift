public import RedisClient

/// The cluster's live nodes and their figures (SPEC §8: `stats` shows every live node's figures and the
/// totals; a node that stops drops out within 10 s). Each node writes its figures under its own key with a
/// short expiry, again every few seconds; a node that stops writing is gone when the key expires.
public struct NodeRegistry: Sendable {
    public let prefix: String
    /// How long a node's entry lives without being written again.
    public let ttlMilliseconds: Int

    public init(prefix: String, ttlMilliseconds: Int = 7_000) {
        self.prefix = prefix
        self.ttlMilliseconds = ttlMilliseconds
    }

    func key(of nodeId: String) -> String { "\(prefix)node:\(nodeId)" }

    /// Writes this node's figures (JSON text) for ``ttlMilliseconds``.
    public func announce(_ nodeId: String, figures: String, on connection: RedisConnection) async throws {
        _ = try await connection.send(["SET", RESPArgument(key(of: nodeId)), RESPArgument(figures), "PX", RESPArgument(ttlMilliseconds)])
    }

    /// Removes this node at once (on a clean shutdown).
    public func leave(_ nodeId: String, on connection: RedisConnection) async throws {
        _ = try await connection.send(["DEL", RESPArgument(key(of: nodeId))])
    }

    /// Every live node's figures, by node id (`SCAN`, never the blocking `KEYS`).
    public func liveNodes(on connection: RedisConnection) async throws -> [String: String] {
        let keys = try await scan(match: "\(prefix)node:*", on: connection)
        guard !keys.isEmpty else { return [:] }
        let values = try await connection.send(["MGET"] + keys.map { RESPArgument($0) }).array ?? []
        var nodes: [String: String] = [:]
        for (key, value) in zip(keys, values) {
            if let figures = value.string { nodes[String(key.dropFirst("\(prefix)node:".count))] = figures }
        }
        return nodes
    }

    /// All keys matching `pattern`, in batches.
    func scan(match pattern: String, on connection: RedisConnection) async throws -> [String] {
        var cursor = "0"
        var keys: [String] = []
        repeat {
            let reply = try await connection.send(["SCAN", RESPArgument(cursor), "MATCH", RESPArgument(pattern), "COUNT", "500"])
            guard let parts = reply.array, parts.count == 2, let next = parts[0].string else {
                throw RedisClientError.server("unexpected SCAN reply \(reply)")
            }
            cursor = next
            keys += (parts[1].array ?? []).compactMap(\.string)
        } while cursor != "0"
        return keys
    }
}
