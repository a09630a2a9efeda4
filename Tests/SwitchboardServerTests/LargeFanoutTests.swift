import Foundation
import NIOCore
import NIOPosix
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// A loop writes a lane and drains outboxes in slices of ``DrainScheduler/sliceSize``: members past the
/// first slice must get every message too, in order (plain lanes, batch lanes and per-connection drains).
@Suite struct LargeFanoutTests {
    @Test(arguments: ["", "batch=true"])
    func everyMemberBeyondTheFirstSliceOfALoopGetsEveryMessage(query: String) async throws {
        let members = DrainScheduler.sliceSize + 150
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)  // every connection on one loop
        try await TestNode.with({
            $0.maxConnectionsPerIP = 10_000
            $0.connectRatePerIP = 100_000
        }, eventLoopGroup: group) { node in
            var clients: [TestClient] = []
            for index in 0..<members {
                let client = try await node.client(query: query, localAddress: "127.0.1.\(1 + index % 200)")
                try await client.subscribe("system_status")
                clients.append(client)
            }
            for n in 1...3 { _ = try await node.node.publisher.publish(Publication(channel: "system_status", event: "tick", data: "\(n)")) }
            // A global message reaches every connection through its own outbox (the per-connection drain). It has a
            // sequence of its own, so it may come before or after the channel's messages.
            _ = try await node.node.publisher.publish(Publication(channel: "", event: "notice", data: "4"), to: .all)
            try await withThrowingTaskGroup(of: [Int].self) { readers in
                for client in clients {
                    readers.addTask {
                        var seen: [Int] = []
                        while seen.count < 4 {
                            let frame = try await client.next(timeout: .seconds(20))
                            let messages = frame["type"] as? String == "batch" ? frame["messages"] as? [[String: Any]] ?? [] : [frame]
                            seen += messages.compactMap { ($0["data"] as? Int) }
                        }
                        return seen
                    }
                }
                var complete = 0
                var wrong: [[Int]: Int] = [:]
                for try await seen in readers {
                    if seen.filter({ $0 != 4 }) == [1, 2, 3] && seen.contains(4) { complete += 1 } else { wrong[seen, default: 0] += 1 }
                }
                #expect(complete == members, "\(members - complete) of \(members) members missed or reordered messages: \(wrong)")
            }
            for client in clients { await client.close() }
        }
        try await group.shutdownGracefully()
    }
}
