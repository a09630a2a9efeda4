import Synchronization

/// The global, per-IP and per-user connection pools (SPEC §3 step 5).
///
/// A slot is reserved before the upgrade completes and released when the connection ends, so the
/// counts never run ahead of the limits however many upgrades race.
public final class ConnectionPools: Sendable {
    /// The configured limits.
    public struct Limits: Sendable {
        public var global: Int
        public var perIP: Int
        public var perUser: Int

        public init(global: Int = 10_000, perIP: Int = 100, perUser: Int = 10) {
            self.global = global
            self.perIP = perIP
            self.perUser = perUser
        }
    }

    /// The pool that was full.
    public enum Exhausted: Error, Sendable, Equatable {
        case global
        case perIP
        case perUser
    }

    private struct Counts {
        var total = 0
        var byIP: [String: Int] = [:]
        var byUser: [String: Int] = [:]
    }

    public let limits: Limits
    private let counts = Mutex(Counts())

    public init(limits: Limits) {
        self.limits = limits
    }

    /// Reserves a slot for a connection from `ip`, owned by `userId` when authenticated.
    public func reserve(ip: String, userId: String?) throws(Exhausted) {
        try counts.withLock { (counts: inout Counts) throws(Exhausted) in
            guard counts.total < limits.global else { throw .global }
            guard counts.byIP[ip, default: 0] < limits.perIP else { throw .perIP }
            if let userId {
                guard counts.byUser[userId, default: 0] < limits.perUser else { throw .perUser }
                counts.byUser[userId, default: 0] += 1
            }
            counts.total += 1
            counts.byIP[ip, default: 0] += 1
        }
    }

    /// Moves a connection's slot from `oldUserId` to `newUserId` after an in-band `auth`.
    public func reassign(from oldUserId: String?, to newUserId: String) throws(Exhausted) {
        guard oldUserId != newUserId else { return }
        try counts.withLock { (counts: inout Counts) throws(Exhausted) in
            guard counts.byUser[newUserId, default: 0] < limits.perUser else { throw .perUser }
            counts.byUser[newUserId, default: 0] += 1
            if let oldUserId { Self.decrement(&counts.byUser, oldUserId) }
        }
    }

    /// Gives back the slot taken by ``reserve(ip:userId:)``.
    public func release(ip: String, userId: String?) {
        counts.withLock { counts in
            counts.total -= 1
            Self.decrement(&counts.byIP, ip)
            if let userId { Self.decrement(&counts.byUser, userId) }
        }
    }

    /// Open connections in all, and the number of distinct IPs and users holding them.
    public var snapshot: (total: Int, uniqueIPs: Int, uniqueUsers: Int) {
        counts.withLock { ($0.total, $0.byIP.count, $0.byUser.count) }
    }

    private static func decrement(_ counts: inout [String: Int], _ key: String) {
        // Removing the key at zero keeps the maps as small as the live population.
        if let count = counts[key], count > 1 { counts[key] = count - 1 } else { counts[key] = nil }
    }
}
