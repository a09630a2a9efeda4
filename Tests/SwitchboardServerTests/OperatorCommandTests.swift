import Foundation
import RedisTestSupport
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// The operator commands of SPEC §1 (`stats`, `channels`, `connections`, `broadcast`, `disconnect`), run as the
/// real executable against a live node: human output, `--json`, exit statuses and the server's messages.
@Suite struct OperatorCommandTests {
    /// The command's exit status, standard output and standard error. The process is started here, as the other
    /// command-line tests start theirs, and waited for on a thread of its own: blocking the concurrency pool would
    /// starve the node under test, which answers on it.
    static func run(_ arguments: [String], input: String? = nil, environment: [String: String] = [:]) async throws -> (Int32, String, String) {
        let result = try await ChildProcess.output(
            of: try CommandLineTests.executable.path, arguments, input: input, environment: environment)
        return (result.status, result.standardOutput, result.standardError)
    }

    @Test func everyCommandAnswersForHumansAndForScripts() async throws {
        try await TestNode.with { node in
            let admin = try await node.token("ops", role: .admin)
            let api = ["--url", "http://127.0.0.1:\(node.port)", "--token", admin]
            let alice = try await node.client(token: try await node.token("alice"))
            try await alice.subscribe("market_data:AAPL")

            let (status, stats, _) = try await Self.run(["stats"] + api)
            #expect(status == 0 && stats.contains("connections") && stats.contains("1 (authenticated 1"), "\(stats)")
            let (_, statsJSON, _) = try await Self.run(["stats", "--json"] + api)
            let parsed = try JSONSerialization.jsonObject(with: Data(statsJSON.utf8)) as? [String: Any]
            #expect((parsed?["connections"] as? [String: Any])?["total"] as? Int == 1, "--json is the server's answer")

            let (_, channels, _) = try await Self.run(["channels"] + api)
            #expect(channels.contains("market_data") && channels.contains("market_data:AAPL"), "\(channels)")

            let (_, connections, _) = try await Self.run(["connections", "alice"] + api)
            let id = try #require(alice.welcome["connectionId"] as? String)
            #expect(connections.contains(id) && connections.contains("market_data:AAPL"), "\(connections)")

            let (published, text, _) = try await Self.run(["broadcast", "--channel", "market_data:AAPL", "--event", "quote", #"{"px":1}"#] + api)
            #expect(published == 0 && text.contains("seq 1"), "\(text)")
            let quote = try await alice.next()
            #expect(quote["event"] as? String == "quote" && (quote["data"] as? [String: Any])?["px"] as? Int == 1)
            // Data from standard input, a user target, the environment for URL and token.
            let environment = ["SWITCHBOARD_URL": "http://127.0.0.1:\(node.port)", "SWITCHBOARD_TOKEN": admin]
            let (fromStdin, _, _) = try await Self.run(["broadcast", "--user", "alice", "--event", "fill"], input: #""done""#, environment: environment)
            #expect(fromStdin == 0)
            #expect(try await alice.next()["data"] as? String == "done")

            // --json is the server's answer for every command.
            for command in [["channels"], ["connections", "alice"], ["broadcast", "--all", "--event", "ping", "1"]] {
                let (code, json, _) = try await Self.run(command + ["--json"] + api)
                let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
                #expect(code == 0 && object != nil, "\(command): \(json)")
            }
            let (_, broadcastJSON, _) = try await Self.run(["broadcast", "--all", "--event", "ping", "2", "--json"] + api)
            #expect(broadcastJSON.contains(#""seq":"#) && broadcastJSON.contains(#""channel":null"#), "\(broadcastJSON)")
            _ = try await alice.next()
            _ = try await alice.next()
            let (disconnected, answer, _) = try await Self.run(["disconnect", "--user", "alice", "--json"] + api)
            #expect(disconnected == 0 && answer.contains(#""disconnected":1"#), "\(answer)")
            #expect(try await alice.closeCode() == 4000)
        }
    }

    @Test func refusalsAndAnUnreachableNodeExitNonZeroWithTheirMessage() async throws {
        try await TestNode.with { node in
            let user = try await node.token("mallory")
            let (refused, _, message) = try await Self.run(
                ["broadcast", "--url", "http://127.0.0.1:\(node.port)", "--token", user, "--all", "--event", "x", "1"])
            #expect(refused == 1 && message.contains("403 FORBIDDEN"), "the server's refusal, as it said it: \(message)")
            let (missing, _, notFound) = try await Self.run(
                ["disconnect", "--url", "http://127.0.0.1:\(node.port)", "--token", try await node.token("ops", role: .admin), "--connection", "nope"])
            #expect(missing == 1 && notFound.contains("404 NOT_FOUND"), "\(notFound)")
            let (badData, _, why) = try await Self.run(["broadcast", "--url", "http://127.0.0.1:\(node.port)", "--all", "--event", "x", "not json"])
            #expect(badData != 0 && why.contains("data must be JSON"))
        }
        let (unreachable, _, message) = try await Self.run(["stats", "--url", "http://127.0.0.1:1", "--token", "t"])
        #expect(unreachable == 2 && message.contains("cannot reach http://127.0.0.1:1"), "\(message)")
    }
}
