import ArgumentParser
import Foundation

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Where the operator commands send their requests, and how they print answers (SPEC §1).
struct APIOptions: ParsableArguments {
    @Option(help: "The node's base URL (default: $SWITCHBOARD_URL, else http://127.0.0.1:8080).") var url: String?
    @Option(help: "An admin token (default: $SWITCHBOARD_TOKEN).") var token: String?
    @Flag(help: "Print the server's JSON answer as it is, for scripts.") var json = false

    var client: APIClient {
        get throws {
            let environment = ProcessInfo.processInfo.environment
            let text = url ?? environment["SWITCHBOARD_URL"] ?? "http://127.0.0.1:8080"
            guard let base = URL(string: text), base.scheme == "http" || base.scheme == "https", base.host != nil else {
                throw ValidationError("--url must be an http(s) URL such as http://127.0.0.1:8080, got '\(text)'")
            }
            return APIClient(base: base, token: token ?? environment["SWITCHBOARD_TOKEN"])
        }
    }

    /// Sends one request and prints the answer: its JSON with `--json`, else what `human` makes of it. A refusal
    /// or an unreachable node prints its message and exits non-zero.
    func request(_ method: String, _ path: String, body: [String: Any]? = nil, human: ([String: Any]) -> String) async throws {
        try await runOperatorCommand {
            let (answer, raw) = try await client.send(method, "api/v1/websocket/" + path, body: body)
            print(json ? String(decoding: raw, as: UTF8.self) : human(answer))
        }
    }
}

/// The management API over HTTP (Foundation's URLSession: no HTTP client of our own).
struct APIClient {
    let base: URL
    let token: String?

    /// Sends a request and returns the JSON object of a 2xx answer; any other answer is an ``OperatorError``.
    func send(_ method: String, _ path: String, body: [String: Any]? = nil) async throws -> ([String: Any], Data) {
        var request = URLRequest(url: base.appendingPathComponent(path))
        request.httpMethod = method
        request.timeoutInterval = 10
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let body {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = try JSONSerialization.data(withJSONObject: body)
        }
        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await URLSession.shared.data(for: request)
        } catch {
            throw OperatorError.unreachable(base.absoluteString, error.localizedDescription)
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        guard (200..<300).contains(status) else {
            let error = object["error"] as? [String: Any]
            throw OperatorError.refused(
                status: status, code: error?["code"] as? String ?? "?",
                message: error?["message"] as? String ?? String(decoding: data.prefix(500), as: UTF8.self))
        }
        return (object, data)
    }
}

/// Why an operator command failed: printed as the server said it, with a non-zero exit status.
enum OperatorError: Error, CustomStringConvertible {
    case unreachable(String, String)
    case refused(status: Int, code: String, message: String)

    var description: String {
        switch self {
        case .unreachable(let url, let reason): "cannot reach \(url): \(reason) (is the node running? --url or SWITCHBOARD_URL)"
        case .refused(let status, let code, let message): "\(status) \(code): \(message)"
        }
    }
}

/// Runs an operator command: a refusal or an unreachable node prints its message and exits non-zero.
func runOperatorCommand(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as OperatorError {
        FileHandle.standardError.write(Data("switchboard: \(error)\n".utf8))
        if case .unreachable = error { throw ExitCode(2) }
        throw ExitCode(1)
    }
}

/// Aligned columns for human output.
func table(_ header: [String], _ rows: [[String]]) -> String {
    let widths = header.indices.map { column in ([header] + rows).map { $0.indices.contains(column) ? $0[column].count : 0 }.max() ?? 0 }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { index, cell in
            index == cells.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
    }
    return ([line(header)] + rows.map(line)).joined(separator: "\n")
}

func describe(_ value: Any?) -> String {
    switch value {
    case nil, is NSNull: "-"
    case let double as Double where double != double.rounded(): String(format: "%.1f", double)
    case let array as [Any]: array.map { describe($0) }.joined(separator: ",")
    case let value?: "\(value)"
    }
}

// MARK: Commands

/// `switchboard stats`
struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Show a node's figures (and, in a cluster, every node's).")
    @OptionGroup var api: APIOptions

    func run() async throws {
        try await api.request("GET", "stats") { stats in
            let connections = stats["connections"] as? [String: Any] ?? [:]
            let channels = stats["channels"] as? [String: Any] ?? [:]
            let messages = stats["messages"] as? [String: Any] ?? [:]
            var rows: [[String]] = [
                ["node", describe(stats["nodeId"])], ["uptime (s)", describe(stats["uptimeSeconds"])],
                ["connections", "\(describe(connections["total"])) (authenticated \(describe(connections["authenticated"])), anonymous \(describe(connections["anonymous"])), peak \(describe(connections["peak"])))"],
                ["channels", "\(describe(channels["total"])) (subscriptions \(describe(channels["subscriptions"])))"],
                ["messages", "published \(describe(messages["published"])), delivered \(describe(messages["delivered"])), dropped \(describe(messages["dropped"]))"],
                ["per second", "published \(describe(messages["publishedPerSecond"])), delivered \(describe(messages["deliveredPerSecond"]))"],
                ["blocked IPs", describe(stats["blockedIPs"])],
                ["slow consumers closed", describe(stats["slowConsumerDisconnects"])],
                ["rate limited", describe((stats["rateLimited"] as? [String: Any])?["total"])],
            ]
            var text = table(["figure", "value"], rows)
            if let cluster = stats["cluster"] as? [String: Any], let nodes = cluster["nodes"] as? [[String: Any]] {
                rows = nodes.map { node in
                    ["nodeId", "connections", "subscriptions", "published", "delivered"].map { describe(node[$0]) }
                }
                let redis = cluster["redis"] as? [String: Any] ?? [:]
                text += "\n\ncluster (Redis \((redis["up"] as? Bool) == true ? "up" : "DOWN"))\n"
                    + table(["node", "connections", "subscriptions", "published", "delivered"], rows)
            }
            return text
        }
    }
}

/// `switchboard channels`
struct ChannelsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "channels", abstract: "List the namespaces and the live channels.")
    @OptionGroup var api: APIOptions

    func run() async throws {
        try await api.request("GET", "channels") { answer in
            let namespaces = (answer["namespaces"] as? [[String: Any]] ?? []).map { namespace in
                ["name", "topic", "minRole", "throttleMs"].map { describe(namespace[$0]) }
                    + [(namespace["lastValue"] as? Bool) == true ? "yes" : "no", describe(namespace["history"])]
            }
            var text = table(["namespace", "topic", "min role", "throttle ms", "last value", "history"], namespaces)
            if let live = answer["live"] as? [[String: Any]] {
                text += "\n\n" + table(["live channel", "subscribers"], live.map { [describe($0["channel"]), describe($0["subscribers"])] })
            }
            return text
        }
    }
}

/// `switchboard connections USER`
struct ConnectionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "connections", abstract: "List a user's open connections.")
    @OptionGroup var api: APIOptions
    @Argument(help: "The user id.") var user: String

    func run() async throws {
        try await api.request("GET", "connections/\(user)") { answer in
            let rows = (answer["connections"] as? [[String: Any]] ?? []).map { connection in
                ["id", "ip", "role", "connectedAt", "channels", "messagesIn", "messagesOut"].map { describe(connection[$0]) }
            }
            return rows.isEmpty ? "no open connections for \(user)" : table(["id", "ip", "role", "connected at", "channels", "in", "out"], rows)
        }
    }
}

/// `switchboard broadcast`
struct BroadcastCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broadcast", abstract: "Publish one message to a channel, a user or every connection.",
        discussion: "DATA is JSON (quote a string: '\"text\"'); without it, or with -, it is read from standard input.")
    @OptionGroup var api: APIOptions
    @Option(help: "Target channel, e.g. market_data:AAPL.") var channel: String?
    @Option(help: "Target user: every connection of the user.") var user: String?
    @Flag(help: "Target every connection.") var all = false
    @Option(help: "Event name.") var event: String
    @Option(help: "Conflation key.") var key: String?
    @Argument(help: "The message's data, JSON.") var data: String?

    func validate() throws {
        guard [channel != nil, user != nil, all].filter({ $0 }).count == 1 else {
            throw ValidationError("name exactly one target: --channel, --user or --all")
        }
    }

    func run() async throws {
        let text: String
        if let data, data != "-" {
            text = data
        } else {
            text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        }
        guard let value = try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]) else {
            throw ValidationError("data must be JSON (quote a string: '\"text\"'), got: \(text.prefix(80))")
        }
        var body: [String: Any] = ["event": event, "data": value]
        if let channel { body["channel"] = channel }
        if let user { body["userId"] = user }
        if all { body["all"] = true }
        if let key { body["key"] = key }
        try await api.request("POST", "broadcast", body: body) { answer in
            let target = (answer["channel"] as? String).map { "channel \($0)" } ?? "every connection"
            let held = answer["held"] as? Bool == true ? " (held by the throttle)" : ""
            return "published to \(target): seq \(describe(answer["seq"])), \(describe(answer["recipients"])) recipients on this node\(held)"
        }
    }
}

/// `switchboard disconnect`
struct DisconnectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disconnect", abstract: "Close a connection, every connection of a user, or of an IP (and block it).")
    @OptionGroup var api: APIOptions
    @Option(help: "A connection id (from welcome, or `connections`).") var connection: String?
    @Option(help: "A user id.") var user: String?
    @Option(help: "An IP address.") var ip: String?
    @Option(help: "With --ip: also block it this many seconds.") var blockSeconds: Int?
    @Option(help: "The close reason the clients get.") var reason: String?

    func validate() throws {
        guard [connection, user, ip].compactMap({ $0 }).count == 1 else {
            throw ValidationError("name exactly one of --connection, --user, --ip")
        }
        if blockSeconds != nil && ip == nil { throw ValidationError("--block-seconds goes with --ip") }
    }

    func run() async throws {
        let path: String
        if let connection {
            path = "disconnect/\(connection)"
        } else if let user {
            path = "disconnect/user/\(user)"
        } else {
            path = "disconnect/ip/\(ip ?? "")"
        }
        var body: [String: Any] = [:]
        if let reason { body["reason"] = reason }
        if let blockSeconds { body["blockSeconds"] = blockSeconds }
        try await api.request("POST", path, body: body) { answer in
            "disconnected \(describe(answer["disconnected"]))" + (answer["blockedSeconds"].map { ", blocked for \($0) s" } ?? "")
        }
    }
}
