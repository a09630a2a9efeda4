import Foundation
import Logging
import NIOCore
import Synchronization
public import SwitchboardCore

/// One security event (SPEC §7, §11): written as a JSON line with `time`, `event`, `ip`, `userId`,
/// `connectionId` and `detail`.
public struct SecurityEvent: Sendable {
    public var kind: SecurityEventKind
    public var ip: String?
    public var userId: String?
    public var connectionId: String?
    public var detail: String

    public init(_ kind: SecurityEventKind, ip: String?, userId: String? = nil, connectionId: String? = nil, detail: String) {
        self.kind = kind
        self.ip = ip
        self.userId = userId
        self.connectionId = connectionId
        self.detail = detail
    }
}

/// Writes security events as JSON lines to `--audit-log FILE`, or to the log when no file is set,
/// and counts them in stats and metrics.
///
/// Floods are summarised, not mirrored: an upgrade-level event of the same kind from the same IP within one
/// second of the last one written is counted but not written again, so an attacker cannot turn its requests
/// into our disk writes.
public final class AuditLog: Sendable {
    /// The `--audit-log` file's writer, off the event loops; nil writes to the log.
    private let file: AuditFileWriter?
    private let logger: Logger
    private let statistics: NodeStatistics
    /// When each (kind, IP) was last written, for ``coalescing``; bounded, and never swept (``RotatingTable``).
    private let lastWritten = Mutex(RotatingTable<ContinuousClock.Instant>(lifetime: AuditLog.coalescing, capacity: 100_000))
    private let broadcasts = Mutex(BroadcastTally())
    /// Events of one kind from one IP closer together than this are written once.
    static let coalescing: Duration = .seconds(1)

    /// - Parameter path: file to append to (created if missing); nil writes to `logger` at `notice`.
    public init(path: String?, logger: Logger, statistics: NodeStatistics) throws {
        self.logger = logger
        self.statistics = statistics
        guard let path else {
            file = nil
            return
        }
        if !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw SettingsError("audit-log: cannot create \(path)")
            }
        }
        guard let handle = FileHandle(forWritingAtPath: path) else { throw SettingsError("audit-log: cannot open \(path) for writing") }
        handle.seekToEndOfFile()
        file = AuditFileWriter(handle: handle) { statistics.recordAuditLineDropped() }
    }

    public func record(_ event: SecurityEvent, now: ContinuousClock.Instant = .now) {
        statistics.recordSecurityEvent(event.kind)
        guard shouldWrite(event, now: now) else { return }
        write(event)
    }

    /// Records `messages` admin broadcasts by `userId` to `namespace` (`user` or `all` for those targets):
    /// the first of a quiet spell is written with `detail`, the rest in one summary line a second
    /// (``writeDueSummaries(now:)``), so a feed cannot flood the log.
    func recordBroadcast(
        by userId: String?, namespace: String, messages: Int = 1, detail: String, now: ContinuousClock.Instant = .now
    ) {
        statistics.recordSecurityEvent(.adminBroadcast, count: messages)
        let source = BroadcastTally.Source(userId: userId ?? "", namespace: namespace)
        guard broadcasts.withLock({ $0.record(source, messages: messages, now: now) }) else { return }
        write(SecurityEvent(.adminBroadcast, ip: nil, userId: userId, detail: detail))
    }

    /// Writes the broadcast summaries that are due: `N more messages to namespace X in the last T s`.
    func writeDueSummaries(now: ContinuousClock.Instant = .now) {
        for summary in broadcasts.withLock({ $0.takeDue(now: now) }) {
            let seconds = Double(summary.span.components.seconds) + Double(summary.span.components.attoseconds) * 1e-18
            let detail = "\(summary.messages) more messages to namespace \(summary.source.namespace) in the last "
                + "\((seconds * 10).rounded() / 10) s"
            write(SecurityEvent(.adminBroadcast, ip: nil, userId: summary.source.userId.isEmpty ? nil : summary.source.userId, detail: detail))
        }
    }

    private func write(_ event: SecurityEvent) {
        // Without a file the line goes to the log at `notice`; below that level it would be built for nothing.
        guard file != nil || logger.logLevel <= .notice else { return }
        var line = ByteBuffer()
        line.writeStaticString("{\"time\":")
        line.writeJSONString(Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true)))
        line.writeStaticString(",\"event\":")
        line.writeJSONString(event.kind.rawValue)
        for (key, value) in [("ip", event.ip), ("userId", event.userId), ("connectionId", event.connectionId)] {
            line.writeString(",\"\(key)\":")
            if let value { line.writeJSONString(value) } else { line.writeStaticString("null") }
        }
        line.writeStaticString(",\"detail\":")
        line.writeJSONString(event.detail)
        line.writeStaticString("}\n")
        guard file != nil else {
            logger.notice("security event", metadata: ["sb.audit": "\(String(buffer: line).dropLast())"])
            return
        }
        file?.append(line)
    }

    /// Audit lines dropped because the file could not keep up (SPEC §13: counted, never waited for).
    var droppedLines: Int { file?.dropped ?? 0 }

    /// Waits until every line written so far is in the file.
    func flushed() async {
        await file?.flushed()
    }

    private func shouldWrite(_ event: SecurityEvent, now: ContinuousClock.Instant) -> Bool {
        // Connection-level events are bounded by the connection's own limits; only upgrade-level floods coalesce.
        guard let ip = event.ip, event.kind.isCoalesced, event.connectionId == nil else { return true }
        let key = "\(event.kind.rawValue) \(ip)"
        // Past the table's capacity (100,000 IPs flooding within a second) lines are not written; every event is
        // still counted.
        return lastWritten.withLock { lastWritten in
            if let last = lastWritten.value(for: key, now: now), now - last < Self.coalescing { return false }
            return lastWritten.insert(now, for: key, now: now)
        }
    }
}
