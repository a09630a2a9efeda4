import Foundation

/// How many CPUs this process may really use: the CPUs of its affinity mask (`taskset`), capped by a cgroup
/// CPU quota (a container limited to 2 CPUs on a 64-CPU host gets 2), as NIO's `System.coreCount` does for the
/// quota. `threads: 0` runs one event loop per such CPU.
public enum ProcessorBudget {
    /// The CPUs this process may use, at least 1.
    public static func count() -> Int {
        let affinity = read("/proc/self/status").flatMap(affinityCount(status:)) ?? ProcessInfo.processInfo.activeProcessorCount
        return max(1, min(affinity, quota() ?? .max))
    }

    /// The cgroup CPU quota in whole CPUs (rounded up), or nil when there is none: cgroup v2's `cpu.max`,
    /// else cgroup v1's `cpu.cfs_quota_us` over `cpu.cfs_period_us`, for this process's own cgroup.
    static func quota() -> Int? {
        let memberships = read("/proc/self/cgroup").map(cgroupPaths(membership:)) ?? [:]
        let unified = memberships[""] ?? ""
        for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
            if let text = read(root + unified + "/cpu.max") ?? read(root + "/cpu.max") { return quota(cpuMax: text) }
        }
        let v1 = "/sys/fs/cgroup/cpu" + (memberships["cpu"] ?? "")
        for directory in [v1, "/sys/fs/cgroup/cpu"] {
            if let quotaText = read(directory + "/cpu.cfs_quota_us"), let periodText = read(directory + "/cpu.cfs_period_us") {
                return quota(cfsQuota: quotaText, cfsPeriod: periodText)
            }
        }
        return nil
    }

    /// Number of CPUs in `Cpus_allowed_list` of /proc/self/status (e.g. `0-1,3` is 3).
    static func affinityCount(status: String) -> Int? {
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") }) else { return nil }
        let list = line.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces)
        let count = list.split(separator: ",").reduce(0) { total, range in
            let bounds = range.split(separator: "-").compactMap { Int($0) }
            return total + (bounds.count == 2 ? bounds[1] - bounds[0] + 1 : bounds.count)
        }
        return count > 0 ? count : nil
    }

    /// cgroup v2 `cpu.max`: `max 100000` is no quota; `150000 100000` is 1.5 CPUs, so 2.
    static func quota(cpuMax: String) -> Int? {
        let fields = cpuMax.split(whereSeparator: \.isWhitespace)
        guard fields.count == 2, let quota = Int(fields[0]), let period = Int(fields[1]) else { return nil }
        return wholeCPUs(quota: quota, period: period)
    }

    /// cgroup v1: a quota of -1 is none.
    static func quota(cfsQuota: String, cfsPeriod: String) -> Int? {
        guard let quota = Int(cfsQuota.trimmingCharacters(in: .whitespacesAndNewlines)),
            let period = Int(cfsPeriod.trimmingCharacters(in: .whitespacesAndNewlines))
        else { return nil }
        return wholeCPUs(quota: quota, period: period)
    }

    /// The cgroup of each controller in /proc/self/cgroup (`4:cpu,cpuacct:/docker/x`; `0::/x` is cgroup v2's, under "").
    static func cgroupPaths(membership: String) -> [String: String] {
        var paths: [String: String] = [:]
        for line in membership.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let path = fields[2] == "/" ? "" : String(fields[2])
            for controller in fields[1].split(separator: ",", omittingEmptySubsequences: false) { paths[String(controller)] = path }
        }
        return paths
    }

    private static func wholeCPUs(quota: Int, period: Int) -> Int? {
        guard quota > 0, period > 0 else { return nil }
        return (quota + period - 1) / period
    }

    private static func read(_ path: String) -> String? {
        try? String(contentsOfFile: path, encoding: .utf8)
    }
}
