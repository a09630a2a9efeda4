import Foundation
import NIOCore
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// Admin broadcasts in the audit trail: a feed is summarised, not mirrored line for line.
@Suite struct AuditSummaryTests {
    private let start = ContinuousClock.now
    private let quotes = BroadcastTally.Source(userId: "feed", namespace: "market_data")

    @Test func firstBroadcastIsWrittenAndTheRestAreSummarisedOncePerInterval() {
        var tally = BroadcastTally()
        let first = tally.record(quotes, now: start)
        #expect(first, "the first of a quiet spell is written as it is")
        var written = 0
        for n in 1...999 where tally.record(quotes, now: start + .milliseconds(n)) { written += 1 }
        #expect(written == 0, "the rest wait for the summary")
        let early = tally.takeDue(now: start + .milliseconds(500))
        #expect(early.isEmpty, "not before the interval is over")
        let due = tally.takeDue(now: start + .seconds(1))
        #expect(due == [BroadcastTally.Summary(source: quotes, messages: 999, span: .seconds(1))])
        let stillBusy = tally.record(quotes, now: start + .milliseconds(1500))
        #expect(!stillBusy, "still busy: counted for the next summary")
        let next = tally.takeDue(now: start + .seconds(2))
        #expect(next.map(\.messages) == [1])
        let quiet = tally.takeDue(now: start + .seconds(3))
        #expect(quiet.isEmpty, "a quiet interval writes nothing")
        let again = tally.record(quotes, now: start + .seconds(4))
        #expect(again, "after a quiet spell the next one is written again")
    }

    @Test func eachAdminAndNamespaceIsCountedApart() {
        var tally = BroadcastTally()
        let signals = BroadcastTally.Source(userId: "feed", namespace: "trading_signals")
        let other = BroadcastTally.Source(userId: "ops", namespace: "market_data")
        for source in [quotes, signals, other] {
            let written = tally.record(source, now: start)
            #expect(written)
        }
        _ = tally.record(quotes, messages: 10, now: start)
        _ = tally.record(other, messages: 2, now: start)
        let due = tally.takeDue(now: start + .seconds(1))
        #expect(due.map(\.source) == [quotes, other])
        #expect(due.map(\.messages) == [10, 2])
    }

    @Test func aFeedOfBroadcastsWritesASummaryNotALineEach() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("audit-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try await TestNode.with({ $0.auditLog = path }) { node in
            let admin = try await node.token("feed", role: .admin)
            let started = ContinuousClock.now
            for n in 1...40 {
                let body = #"{"channel":"market_data:AAPL","event":"quote","data":{"n":\#(n)},"key":"AAPL"}"#
                #expect(try await node.request("POST", "/api/v1/websocket/broadcast", token: admin, body: body).status == 200)
            }
            let seconds = Int((ContinuousClock.now - started).components.seconds)
            node.node.gatekeeper.audit.writeDueSummaries(now: .now + .seconds(2))
            await node.node.gatekeeper.audit.flushed()
            let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
                .compactMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
                .filter { $0["event"] as? String == "admin_broadcast" }
            // The first as it is, then a summary for each housekeeping second the loop spanned, and the last one.
            #expect((2...(3 + seconds)).contains(lines.count), "40 broadcasts in \(seconds) s, \(lines.count) lines: \(lines)")
            #expect(lines.allSatisfy { $0["userId"] as? String == "feed" })
            // A line as it is counts one broadcast (there is more than the first when the machine is so slow that a
            // quiet gap ended the summary window mid-loop); a summary says how many it stands for.
            let counted = lines.map { line -> Int in
                let detail = line["detail"] as? String ?? ""
                return detail.hasPrefix("channel ") ? 1 : detail.split(separator: " ").first.flatMap { Int($0) } ?? 0
            }
            #expect(counted.reduce(0, +) == 40, "the lines account for every broadcast: \(lines.map { $0["detail"] ?? "" })")
            #expect(lines.allSatisfy {
                let detail = $0["detail"] as? String ?? ""
                return detail == "channel market_data:AAPL event quote" || detail.contains("more messages to namespace market_data")
            })
            let stats = try await node.request("GET", "/api/v1/websocket/stats", token: admin).json
            #expect((stats["securityEvents"] as? [String: Any])?["admin_broadcast"] as? Int == 40, "every broadcast is still counted")
        }
    }
}

/// Issue 34, defect 7: audit lines are written off the event loops, through a bounded queue that drops and
/// counts when the file cannot keep up.
@Suite struct AuditFileWriterTests {
    @Test func aFileThatDoesNotKeepUpNeverBlocksTheCallerAndDropsAreCounted() async throws {
        // A pipe nobody reads: the writing thread blocks once the pipe's buffer is full, like a stuck disk.
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        let reader = FileHandle(fileDescriptor: ends[0], closeOnDealloc: true)
        let dropped = Counted()
        let writer = AuditFileWriter(handle: FileHandle(fileDescriptor: ends[1], closeOnDealloc: false), capacity: 16) { dropped.add() }
        let line = ByteBuffer(string: String(repeating: "x", count: 1_023) + "\n")
        for _ in 0..<2_000 { writer.append(line) }  // 2 MB: far past the pipe's buffer and the queue
        #expect(writer.dropped > 0 && writer.dropped == dropped.value, "dropped and counted, not waited for")
        // Reading frees the pipe: what was queued is written after all.
        let drain = Task.detached { while !(reader.availableData.isEmpty) {} }
        await writer.flushed()
        close(ends[1])
        _ = await drain.value
    }

    private final class Counted: @unchecked Sendable {
        private let lock = NSLock()
        private var count = 0
        func add() { lock.withLock { count += 1 } }
        var value: Int { lock.withLock { count } }
    }
}
