import Foundation

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

    /// Reads the `TcpExt:` header line and the value line after it.
    static func parse(_ netstat: String) -> ListenQueueCounters? {
        let rows = netstat.split(separator: "\n").filter { $0.hasPrefix("TcpExt:") }
        guard rows.count >= 2 else { return nil }
        let names = rows[0].split(separator: " ").dropFirst()
        let values = rows[1].split(separator: " ").dropFirst().map { Int($0) }
        let table = Dictionary(zip(names, values), uniquingKeysWith: { first, _ in first })
        guard let overflows = table["ListenOverflows"] ?? nil, let drops = table["ListenDrops"] ?? nil else { return nil }
        return ListenQueueCounters(overflows: overflows, drops: drops)
    }
}
