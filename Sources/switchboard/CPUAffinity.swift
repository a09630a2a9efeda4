import Foundation

/// The CPUs this process may run on.
enum CPUAffinity {
    /// Number of CPUs in the affinity mask (`taskset`; `Cpus_allowed_list` of /proc/self/status, e.g. `0-1,3`),
    /// or of active CPUs where that cannot be read.
    static func count() -> Int {
        if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") })
        {
            let list = line.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces)
            let count = list.split(separator: ",").reduce(0) { total, range in
                let bounds = range.split(separator: "-").compactMap { Int($0) }
                return total + (bounds.count == 2 ? bounds[1] - bounds[0] + 1 : bounds.count)
            }
            if count > 0 { return count }
        }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }
}
