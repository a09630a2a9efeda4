import Foundation
import Synchronization

/// The kernel's listen-queue counters from `/proc/net/netstat` (`TcpExt: ListenOverflows ListenDrops`).
///
/// They are per host, not per socket: Linux keeps no per-listener count. Reported in `stats` so an operator
/// can see that a reconnect storm overflowed a queue (clients then retry after 1 s, 3 s, ...).
struct ListenQueueCounters: Equatable {
    var overflows: Int
    var drops: Int

    /// The machine's counters, or nil where `/proc/net/netstat` cannot be read.
    static func read() -> ListenQueueCounters? {
        (try? String(contentsOfFile: "/proc/net/netstat", encoding: .utf8)).flatMap(parse)
    }

    /// The counters as read at most a second ago: `stats` may be polled often (a dashboard, a probe every 100
    /// ms), on the event loop, and the kernel formats the whole file for every read (most of what a `stats`
    /// request cost once the parse was cheap).
    static let recent = RecentValue(every: .seconds(1)) { read() }

    /// Reads the `TcpExt:` header line and the value line after it.
    ///
    /// On bytes, not `Character`s: `stats` reads the file on every request, on the event loop, and splitting its
    /// few kilobytes by `Character` was most of a `stats` request's CPU (about 0.5 ms).
    static func parse(_ netstat: String) -> ListenQueueCounters? {
        let rows = netstat.utf8.split(separator: UInt8(ascii: "\n")).filter { $0.starts(with: "TcpExt:".utf8) }
        guard rows.count >= 2 else { return nil }
        let names = rows[0].split(separator: UInt8(ascii: " ")).dropFirst()
        let values = Array(rows[1].split(separator: UInt8(ascii: " ")).dropFirst())
        func value(of name: String) -> Int? {
            guard let index = names.firstIndex(where: { $0.elementsEqual(name.utf8) }) else { return nil }
            let column = names.distance(from: names.startIndex, to: index)
            return column < values.count ? Int(Substring(values[column])) : nil
        }
        guard let overflows = value(of: "ListenOverflows"), let drops = value(of: "ListenDrops") else { return nil }
        return ListenQueueCounters(overflows: overflows, drops: drops)
    }
}

/// A value read again only once `interval` has passed since the last read (shared by every caller).
final class RecentValue<Value: Sendable>: Sendable {
    private let interval: Duration
    private let readValue: @Sendable () -> Value
    private let last = Mutex<(at: ContinuousClock.Instant, value: Value)?>(nil)

    init(every interval: Duration, read: @escaping @Sendable () -> Value) {
        self.interval = interval
        self.readValue = read
    }

    /// The value read within `interval` of `now`, or a new one.
    func value(now: ContinuousClock.Instant = .now) -> Value {
        last.withLock { last in
            if let last, now - last.at < interval { return last.value }
            let value = readValue()
            last = (now, value)
            return value
        }
    }
}
