import Synchronization
import SwitchboardCore

/// A connection's slot in the pools: taken before the upgrade, given back exactly once when the channel closes.
///
/// The connection releases it when it ends; a reservation whose upgrade never completed is released when the
/// last reference to it goes (with the upgrade's state, when the channel closes), so no slot can leak.
final class SlotReservation: Sendable {
    private let pools: ConnectionPools
    let ip: String
    private let state: Mutex<(userId: String?, released: Bool)>

    init(pools: ConnectionPools, ip: String, userId: String?) {
        self.pools = pools
        self.ip = ip
        self.state = Mutex((userId, false))
    }

    /// Moves the slot to `userId` after an in-band `auth`; throws when that user's pool is full.
    func reassign(to userId: String) throws(ConnectionPools.Exhausted) {
        try state.withLock { (state: inout (userId: String?, released: Bool)) throws(ConnectionPools.Exhausted) in
            guard !state.released else { return }
            try pools.reassign(from: state.userId, to: userId)
            state.userId = userId
        }
    }

    deinit {
        release()
    }

    func release() {
        state.withLock { state in
            guard !state.released else { return }
            state.released = true
            pools.release(ip: ip, userId: state.userId)
        }
    }
}
