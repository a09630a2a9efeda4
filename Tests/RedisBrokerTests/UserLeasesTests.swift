import NIOPosix
import RedisClient
import RedisTestSupport
import Testing

@testable import RedisBroker

/// Per-user limits across nodes: concurrent admissions on several connections (nodes) take exactly the limit.
@Suite struct UserLeasesTests {
    let loop = MultiThreadedEventLoopGroup.singleton.next()

    @Test func concurrentAdmissionsOnThreeNodesTakeExactlyTheLimit() async throws {
        try await RedisServer.with { server in
            let leases = UserLeases(prefix: "t:")
            var nodes: [RedisConnection] = []
            for _ in 0..<3 { nodes.append(try await RedisConnection.connect(to: server.url, on: loop)) }
            // 3 nodes x 5 connections of alice at once, limit 4.
            let admitted = try await withThrowingTaskGroup(of: Bool.self) { group in
                for (node, connection) in nodes.enumerated() {
                    for index in 0..<5 {
                        group.addTask { try await leases.acquire("node\(node)|c\(index)", of: "alice", limit: 4, on: connection) }
                    }
                }
                return try await group.reduce(into: 0) { $0 += $1 ? 1 : 0 }
            }
            #expect(admitted == 4, "exactly the limit, never one more, however the nodes race")
            let holders = try await nodes[0].send(["ZRANGE", "t:user-leases:alice", "0", "-1"]).array?.compactMap(\.string) ?? []
            #expect(holders.count == 4)
            #expect(try await leases.acquire("other|x", of: "alice", limit: 4, on: nodes[1]) == false)
            try await leases.release(holders[0], of: "alice", on: nodes[2])
            #expect(try await leases.acquire("other|x", of: "alice", limit: 4, on: nodes[1]), "a released slot is free everywhere")
            #expect(try await leases.acquire(holders[1], of: "alice", limit: 4, on: nodes[1]), "a holder renewing is not refused")
            for node in nodes { await node.close() }
        }
    }

    @Test func aDeadNodesLeasesExpireAndRefreshKeepsLiveOnes() async throws {
        try await RedisServer.with { server in
            // The dead node took its lease for 300 ms and never refreshes; the live node's leases are long. Only
            // "at least 300 ms passed" matters, so a slow machine cannot make this fail.
            let dead = UserLeases(prefix: "t:", leaseMilliseconds: 300)
            let live = UserLeases(prefix: "t:", leaseMilliseconds: 60_000)
            let redis = try await RedisConnection.connect(to: server.url, on: loop)
            #expect(try await dead.acquire("dead|1", of: "bob", limit: 2, on: redis))
            #expect(try await live.acquire("live|1", of: "bob", limit: 2, on: redis))
            try await Task.sleep(for: .milliseconds(600))  // time passing is what is tested
            #expect(try await live.refresh(["live|1"], of: "bob", limit: 2, on: redis) == [])
            #expect(try await live.acquire("live|2", of: "bob", limit: 2, on: redis), "the dead node's lease expired")
            #expect(try await live.acquire("live|3", of: "bob", limit: 2, on: redis) == false, "the live ones did not")
            // A lease gone from Redis (it expired while its node was paused) is taken back when the pool has room…
            try await live.release("live|1", of: "bob", on: redis)
            #expect(try await live.refresh(["live|1"], of: "bob", limit: 2, on: redis) == [])
            #expect(try await redis.send(["ZSCORE", "t:user-leases:bob", "live|1"]).isNull == false)
            // …and reported lost when other nodes filled the pool meanwhile: its connection must close.
            try await live.release("live|1", of: "bob", on: redis)
            #expect(try await live.acquire("other|1", of: "bob", limit: 2, on: redis))
            #expect(try await live.refresh(["live|1"], of: "bob", limit: 2, on: redis) == ["live|1"])
            #expect(try await redis.send(["ZCARD", "t:user-leases:bob"]).integer == 2, "the pool stays at its limit")
            await redis.close()
        }
    }
}
