import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// SPEC §6 health: `ok`, `degraded` and `unhealthy`, answered promptly whatever the event loops do.
@Suite struct HealthTests {
    /// Blocks `loop` for `duration` (a stand-in for a handler stuck in a system call).
    private static func block(_ loop: any EventLoop, for duration: Duration) -> EventLoopFuture<Void> {
        loop.submit { Thread.sleep(forTimeInterval: Double(duration.components.seconds)) }
    }

    /// How long a test keeps a loop stuck, and the bound on the check's answer: well apart, so that a loaded
    /// machine's delays cannot be mistaken for waiting on the stuck loop.
    private static let stuckFor: Duration = .seconds(8)
    private static let bound: Duration = .seconds(5)

    @Test func aStuckLoopMakesHealthDegradedWithinASecond() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        try await TestNode.with(eventLoopGroup: group) { node in
            // One of the two loops. Connections alternate between them, so of
            // several requests some are served by the free one, and those must not wait for the stuck one.
            let stuck = try #require(group.makeIterator().first { $0 !== node.eventLoop })
            let blocked = Self.block(stuck, for: Self.stuckFor)
            let started = ContinuousClock.now
            let answers = await withTaskGroup(of: HTTPTestResponse?.self) { requests in
                for _ in 0..<4 {
                    requests.addTask { try? await node.request("GET", "/api/v1/websocket/health") }
                }
                var answers: [(HTTPTestResponse, Duration)] = []
                for await answer in requests {
                    if let answer { answers.append((answer, ContinuousClock.now - started)) }
                }
                return answers
            }
            try await blocked.get()
            let first = try #require(answers.min { $0.1 < $1.1 }, "no health request was answered")
            // The check gives a loop 500 ms; what matters is that it never waits for the stuck one (8 s). The bound
            // leaves room for a loaded machine (the full parallel suite has taken over 3 s).
            #expect(first.1 < Self.bound, "answered while the loop was still stuck (took \(first.1))")
            #expect(first.0.status == 200)
            #expect(first.0.json["status"] as? String == "degraded", "\(first.0.body)")
            #expect((first.0.json["checks"] as? [String: Any])?["eventLoops"] as? String != "ok")
        }
        try await group.shutdownGracefully()
    }

    @Test func everyLoopStuckCountsThemAllWithinTheLimit() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let blocked = group.makeIterator().map { Self.block($0, for: Self.stuckFor) }
        let started = ContinuousClock.now
        let slow = await HealthCheck.unresponsiveLoops(of: group, within: .milliseconds(300))
        #expect(ContinuousClock.now - started < Self.bound, "the check does not wait for stuck loops (8 s)")
        #expect(slow == 2)
        #expect(HealthCheck.status(unresponsiveLoops: slow, of: 2) == .unhealthy)
        for future in blocked { try await future.get() }
        #expect(await HealthCheck.unresponsiveLoops(of: group, within: .seconds(2)) == 0, "answers as soon as all loops ran it")
        try await group.shutdownGracefully()
    }

    @Test func statusFollowsTheShareOfStuckLoops() {
        #expect(HealthCheck.status(unresponsiveLoops: 0, of: 4) == .ok)
        #expect(HealthCheck.status(unresponsiveLoops: 1, of: 4) == .degraded)
        #expect(HealthCheck.status(unresponsiveLoops: 4, of: 4) == .unhealthy)
    }
}

/// The kernel's listen-queue counters shown in `stats`.
@Suite struct ListenQueueCountersTests {
    @Test func statsReadsTheCountersAtMostOnceASecond() {
        let reads = Mutex(0)
        let recent = RecentValue(every: .seconds(1)) { reads.withLock { $0 += 1; return $0 } }
        let start = ContinuousClock.now
        #expect(recent.value(now: start) == 1)
        #expect(recent.value(now: start + .milliseconds(999)) == 1, "read within the second: the same value")
        #expect(recent.value(now: start + .seconds(1)) == 2)
        #expect(recent.value(now: start + .milliseconds(1_500)) == 2)
        #expect(reads.withLock { $0 } == 2)
    }

    @Test func readsTheTcpExtRows() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 1297 8369 8400\nIpExt: InNoRoutes\nIpExt: 0\n"
        #expect(ListenQueueCounters.parse(text) == ListenQueueCounters(overflows: 8369, drops: 8400))
        #expect(ListenQueueCounters.parse("IpExt: InNoRoutes\nIpExt: 0\n") == nil)
        #expect(ListenQueueCounters.parse("TcpExt: ListenDrops ListenOverflows\nTcpExt: 7 5\n") == ListenQueueCounters(overflows: 5, drops: 7))
        #expect(ListenQueueCounters.parse("TcpExt: ListenOverflows ListenDrops\nTcpExt: 5\n") == nil, "a value row too short")
        #expect(ListenQueueCounters.parse("TcpExt: ListenOverflows ListenDrops\nTcpExt: 5 x\n") == nil, "not a number")
    }
}
