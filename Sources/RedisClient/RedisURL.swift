import Foundation

/// Where a Redis server is and how to log in: `redis://[user:password@]host[:port][/db]` (SPEC §8).
public struct RedisURL: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var username: String?
    public var password: String?
    public var database: Int

    public init(host: String, port: Int = 6379, username: String? = nil, password: String? = nil, database: Int = 0) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
    }

    /// Why a URL could not be read, with a message that says what was expected.
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
    }

    /// Reads `redis://…`; `rediss://` (TLS) is refused until TLS exists.
    public init(parsing text: String) throws(ParseError) {
        guard text.hasPrefix("redis://") else {
            let hint = text.hasPrefix("rediss://") ? "rediss:// (TLS) is not supported yet" : "it must start with redis://"
            throw ParseError(description: "redis-url '\(text.prefix(100))': \(hint)")
        }
        var rest = Substring(text.dropFirst("redis://".count))
        var database = 0
        if let slash = rest.firstIndex(of: "/") {
            let path = rest[rest.index(after: slash)...]
            if !path.isEmpty {
                guard let number = Int(path), (0...15_999).contains(number) else {
                    throw ParseError(description: "redis-url: the database after '/' must be a number, got '\(path.prefix(20))'")
                }
                database = number
            }
            rest = rest[..<slash]
        }
        var username: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                username = credentials[..<colon].isEmpty ? nil : Self.percentDecoded(credentials[..<colon])
                password = Self.percentDecoded(credentials[credentials.index(after: colon)...])
            } else {
                password = Self.percentDecoded(credentials)
            }
        }
        var host = rest
        var port = 6379
        if host.hasPrefix("[") {  // [::1]:6379
            guard let close = host.firstIndex(of: "]") else { throw ParseError(description: "redis-url: unclosed '[' in the host") }
            let after = host[host.index(after: close)...]
            host = host[host.index(after: host.startIndex)..<close]
            if after.hasPrefix(":") { port = try Self.port(after.dropFirst()) }
        } else if let colon = host.lastIndex(of: ":") {
            port = try Self.port(host[host.index(after: colon)...])
            host = host[..<colon]
        }
        guard !host.isEmpty else { throw ParseError(description: "redis-url: no host (expected redis://host:port)") }
        self.init(host: String(host), port: port, username: username, password: password, database: database)
    }

    private static func port(_ text: Substring) throws(ParseError) -> Int {
        guard let port = Int(text), (1...65_535).contains(port) else {
            throw ParseError(description: "redis-url: the port must be 1-65535, got '\(text.prefix(10))'")
        }
        return port
    }

    private static func percentDecoded(_ text: Substring) -> String {
        text.removingPercentEncoding ?? String(text)
    }

    /// The URL without its password.
    public var description: String {
        let user = username.map { "\($0):***@" } ?? (password == nil ? "" : ":***@")
        return "redis://\(user)\(host):\(port)/\(database)"
    }
}
