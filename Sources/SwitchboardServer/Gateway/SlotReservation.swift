import Synchronization
import SwitchboardCore

/// A connection's slot in the pools: taken before the upgrade, given back exactly once when the channel closes.
///
/// The connection releases it when it ends; a reservation whose upgrade never completed is released when the
/// last reference to it goes (with the upgrade's state, when the channel closes), so no slot can leak. In
/// cluster mode an authenticated connection also holds a lease in its user's cluster-wide pool (SPEC §8),
/// given back with the slot.
final class SlotReservation: Sendable {
    private let slots: ConnectionSlots
    private var pools: ConnectionPools { slots.pools }
    private var cluster: (any Cluster)? { slots.cluster }
    let ip: String
    /// The id the connection will have (made here so the cluster lease can name it).
    let connectionId: String
    private let state: Mutex<(userId: String?, leasedUser: String?, released: Bool)>

    init(slots: ConnectionSlots, ip: String, userId: String?) {
        self.slots = slots
        self.ip = ip
        self.connectionId = Self.makeId()
        self.state = Mutex((userId, nil, false))
    }

    private static func makeId() -> String {
        String(RandomWords.next(), radix: 36)
    }

    /// Moves the slot to `userId` after an in-band `auth`; throws when that user's pool is full.
    func reassign(to userId: String) throws(ConnectionPools.Exhausted) {
        try state.withLock { (state: inout (userId: String?, leasedUser: String?, released: Bool)) throws(ConnectionPools.Exhausted) in
            guard !state.released else { return }
            try pools.reassign(from: state.userId, to: userId)
            state.userId = userId
        }
    }

    /// Takes a slot in `userId`'s cluster-wide pool of `limit` (giving back one held for another user); false
    /// when the cluster holds `limit` already. Without a cluster, true.
    func leaseClusterSlot(of userId: String, limit: Int) async -> Bool {
        guard let cluster else { return true }
        let previous = state.withLock { state -> String?? in
            guard !state.released, state.leasedUser != userId else { return .none }
            return .some(state.leasedUser)
        }
        guard case .some(let old) = previous else { return true }
        if let old { cluster.releaseUserSlot(userId: old, connectionId: connectionId) }
        guard await cluster.acquireUserSlot(userId: userId, connectionId: connectionId, limit: limit) else { return false }
        let releasedMeanwhile = state.withLock { state in
            state.leasedUser = userId
            return state.released
        }
        if releasedMeanwhile { cluster.releaseUserSlot(userId: userId, connectionId: connectionId) }
        return true
    }

    deinit {
        release()
    }

    func release() {
        let leased = state.withLock { state -> String? in
            guard !state.released else { return nil }
            state.released = true
            pools.release(ip: ip, userId: state.userId)
            return state.leasedUser
        }
        if let leased { cluster?.releaseUserSlot(userId: leased, connectionId: connectionId) }
    }
}

/// Where a node's connection slots are held: its own pools and, in cluster mode, the cluster's per-user leases.
/// One per node, so a connection's reservation holds one reference instead of both (memory per idle connection).
final class ConnectionSlots: Sendable {
    let pools: ConnectionPools
    let cluster: (any Cluster)?

    init(pools: ConnectionPools, cluster: (any Cluster)?) {
        self.pools = pools
        self.cluster = cluster
    }
}
