import Crypto
public import NIOCore

/// A Lua script run by its SHA1 (`EVALSHA`), sent whole (`EVAL`) only when Redis does not know it: after a
/// restart or `SCRIPT FLUSH` Redis answers `NOSCRIPT`, and `EVAL` both runs and caches it again.
public struct RedisScript: Sendable {
    public let source: String
    /// The SHA1 Redis knows the script by (hex).
    public let sha1: String

    public init(_ source: String) {
        self.source = source
        self.sha1 = Insecure.SHA1.hash(data: Array(source.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    /// The `EVALSHA` command for `keys` and `arguments`.
    func evalSHA(keys: [RESPArgument], arguments: [RESPArgument]) -> [RESPArgument] {
        ["EVALSHA", RESPArgument(sha1), RESPArgument(keys.count)] + keys + arguments
    }

    func eval(keys: [RESPArgument], arguments: [RESPArgument]) -> [RESPArgument] {
        ["EVAL", RESPArgument(source), RESPArgument(keys.count)] + keys + arguments
    }
}

extension RedisConnection {
    /// Runs `script` by SHA1, falling back to `EVAL` on `NOSCRIPT`; an error reply of the script throws.
    public func run(_ script: RedisScript, keys: [RESPArgument] = [], arguments: [RESPArgument] = []) async throws -> RESPValue {
        try await run([(script, keys, arguments)])[0].get()
    }

    /// Runs several scripts (or the same one several times) in one pipelined write: one round trip, and on a
    /// `NOSCRIPT` only the refused ones are sent again with `EVAL`.
    public func run(
        _ calls: [(script: RedisScript, keys: [RESPArgument], arguments: [RESPArgument])]
    ) async throws -> [Result<RESPValue, RedisClientError>] {
        let replies = try await pipeline(calls.map { $0.script.evalSHA(keys: $0.keys, arguments: $0.arguments) })
        let refused = replies.indices.filter { index in
            if case .error(let message) = replies[index] { return message.hasPrefix("NOSCRIPT") }
            return false
        }
        var results = replies.map { reply -> Result<RESPValue, RedisClientError> in
            if case .error(let message) = reply { return .failure(.server(message)) }
            return .success(reply)
        }
        guard !refused.isEmpty else { return results }
        let retried = try await pipeline(refused.map { calls[$0].script.eval(keys: calls[$0].keys, arguments: calls[$0].arguments) })
        for (index, reply) in zip(refused, retried) {
            if case .error(let message) = reply { results[index] = .failure(.server(message)) } else { results[index] = .success(reply) }
        }
        return results
    }
}
