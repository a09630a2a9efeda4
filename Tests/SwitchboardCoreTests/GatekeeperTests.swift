import Testing

@testable import SwitchboardCore

@Suite struct GatekeeperTests {
    @Test func poolsEnforceGlobalPerIPAndPerUserLimits() throws {
        let pools = ConnectionPools(limits: .init(global: 3, perIP: 2, perUser: 1))
        try pools.reserve(ip: "a", userId: "u1")
        #expect(throws: ConnectionPools.Exhausted.perUser) { try pools.reserve(ip: "b", userId: "u1") }
        try pools.reserve(ip: "a", userId: nil)
        #expect(throws: ConnectionPools.Exhausted.perIP) { try pools.reserve(ip: "a", userId: nil) }
        try pools.reserve(ip: "b", userId: nil)
        #expect(throws: ConnectionPools.Exhausted.global) { try pools.reserve(ip: "c", userId: nil) }
        pools.release(ip: "a", userId: "u1")
        #expect(pools.snapshot.total == 2)
        try pools.reserve(ip: "c", userId: "u1")
    }

    @Test func reassignMovesAConnectionBetweenUsers() throws {
        let pools = ConnectionPools(limits: .init(global: 10, perIP: 10, perUser: 1))
        try pools.reserve(ip: "a", userId: "u1")
        try pools.reserve(ip: "a", userId: nil)
        #expect(throws: ConnectionPools.Exhausted.perUser) { try pools.reassign(from: nil, to: "u1") }
        try pools.reassign(from: nil, to: "u2")
        #expect(pools.snapshot.uniqueUsers == 2)
        pools.release(ip: "a", userId: "u2")
        pools.release(ip: "a", userId: "u1")
        #expect(pools.snapshot.total == 0 && pools.snapshot.uniqueIPs == 0 && pools.snapshot.uniqueUsers == 0)
    }

    @Test func tokenBucketRefillsOverTime() {
        let start = ContinuousClock.now
        var bucket = TokenBucket(capacity: 2, refillPerSecond: 1, now: start)
        let taken = (0..<3).map { _ in bucket.take(now: start) }
        #expect(taken == [true, true, false])
        let refilled = bucket.take(now: start + .seconds(1))
        #expect(refilled)
        #expect(bucket.isFull(now: start + .seconds(10)))
    }

    @Test func messageLimiterAllowsBurstThenLimitsThenFlagsAbuseAtThreeTimes() {
        let now = ContinuousClock.now
        var limiter = MessageRateLimiter(perMinute: 60, burst: 10, now: now)
        let verdicts = (0..<31).map { _ in limiter.check(now: now) }
        #expect(verdicts.prefix(10).allSatisfy { $0 == .allow })
        #expect(verdicts.dropFirst(10).prefix(20).allSatisfy { $0 == .limit })
        #expect(verdicts.last == .abuse)
    }

    @Test func connectRateIsPerKey() {
        let now = ContinuousClock.now
        let limiter = KeyedRateLimiter(perMinute: 2)
        #expect(limiter.allow("a", now: now) && limiter.allow("a", now: now))
        #expect(!limiter.allow("a", now: now))
        #expect(limiter.allow("b", now: now))
        #expect(limiter.allow("a", now: now + .seconds(30)))
    }

    @Test func perKeyTablesForgetIdleKeysAndStayBoundedWithoutASweep() {
        let start = ContinuousClock.now
        var table = RotatingTable<Int>(lifetime: .seconds(60), capacity: 3, now: start)
        let added = ["a", "b", "c", "d"].map { table.insert(1, for: $0, now: start) }
        #expect(added == [true, true, true, false], "a generation takes at most `capacity` new keys")
        let updated = table.insert(10, for: "a", now: start)
        #expect(updated, "a known key is always updated")
        // After one lifetime: the old generation is still readable, and a key read moves to the new one.
        let b = table.value(for: "b", now: start + .seconds(61))
        let d = table.insert(4, for: "d", now: start + .seconds(61))
        #expect(b == 1 && d)
        // After another: keys untouched for two lifetimes are gone; those touched since are kept.
        let a = table.value(for: "a", now: start + .seconds(122))
        let bAgain = table.value(for: "b", now: start + .seconds(122))
        #expect(a == nil && bAgain == 1)
        #expect(table.count == 2, "b and d")
        let late = table.value(for: "b", now: start + .seconds(400))
        #expect(late == nil, "a long silence forgets everything")
    }

    @Test func aFloodOfNewIPsCannotGetPastTheLimiters() {
        let now = ContinuousClock.now
        let limiter = KeyedRateLimiter(perMinute: 60, capacity: 1_000)
        let allowed = (0..<5_000).filter { limiter.allow("10.0.\($0 / 256).\($0 % 256)", now: now) }.count
        #expect(allowed == 1_000 && limiter.count == 1_000, "past the table's capacity new keys are refused, not tracked")
        let tracker = AuthFailureTracker(threshold: 5, capacity: 1_000)
        let blocked = (0..<2_000).filter { tracker.recordFailure(from: "ip\($0)", now: now) }.count
        #expect(blocked == 1_000 && tracker.count == 1_000, "a failure from an IP the table cannot hold blocks it")
    }

    @Test func theBlockListIsBounded() {
        let now = ContinuousClock.now
        let blocks = BlockList(capacity: 2)
        #expect(blocks.block("a", for: .seconds(10), now: now) && blocks.block("b", for: .seconds(10), now: now))
        #expect(!blocks.block("c", for: .seconds(10), now: now), "full: a new block is refused")
        #expect(blocks.block("a", for: .seconds(20), now: now), "an existing one is still extended")
        #expect(blocks.isBlocked("a", now: now + .seconds(15)) && !blocks.isBlocked("c", now: now))
        _ = blocks.expire(now: now + .seconds(11))
        #expect(blocks.block("c", for: .seconds(10), now: now + .seconds(11)), "room again once blocks expire")
    }

    @Test func blocksExpire() {
        let now = ContinuousClock.now
        let blocks = BlockList()
        blocks.block("1.2.3.4", for: .seconds(10), now: now)
        #expect(blocks.isBlocked("1.2.3.4", now: now + .seconds(9)))
        #expect(blocks.count(now: now) == 1)
        #expect(!blocks.isBlocked("1.2.3.4", now: now + .seconds(11)))
        #expect(blocks.expire(now: now + .seconds(5)).isEmpty)
        #expect(blocks.expire(now: now + .seconds(11)) == ["1.2.3.4"])
        #expect(blocks.count(now: now) == 0)
    }

    @Test func authFailuresBlockAtTheThresholdWithinTheWindow() {
        let start = ContinuousClock.now
        let tracker = AuthFailureTracker(threshold: 3, window: .seconds(60))
        #expect(!tracker.recordFailure(from: "a", now: start))
        #expect(!tracker.recordFailure(from: "a", now: start + .seconds(1)))
        #expect(!tracker.recordFailure(from: "b", now: start + .seconds(1)))
        #expect(tracker.recordFailure(from: "a", now: start + .seconds(2)))
        // Failures that left the window no longer count.
        #expect(!tracker.recordFailure(from: "c", now: start))
        #expect(!tracker.recordFailure(from: "c", now: start + .seconds(1)))
        #expect(!tracker.recordFailure(from: "c", now: start + .seconds(70)))
    }
}
