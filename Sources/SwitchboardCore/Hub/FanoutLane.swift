/// A channel's subscribers on one thread, reached together: the hub hands each message to the lane once,
/// and the lane writes it to all its members in one pass on their thread.
///
/// A subscriber that returns a ``FanoutMembership`` is a member of one lane per channel it subscribes to
/// (made by its ``FanoutGroup``, shared with every subscriber of the same group). A lane delivers only
/// messages with a `seq` above the one current when its member joined: the reply, replay and last value of
/// a subscribe go through ``Subscriber/deliver(_:)``, and the lane must keep each member's messages behind
/// what the member already has queued.
public protocol FanoutLane: AnyObject, Sendable {
    /// Adds `member`, which receives the messages numbered above `seq`. Called with the channel's lock held.
    func join(_ member: UInt64, after seq: UInt64)
    /// Removes `member`. Called with the channel's lock held.
    /// - Returns: whether the lane is left without members.
    func leave(_ member: UInt64) -> Bool
    /// Queues `delivery` for every member (any thread, channel lock held): must not block or call back into the hub.
    func enqueue(_ delivery: Delivery)
}

/// Makes a channel's lane for the subscribers that share it (for example, the connections of one event loop).
public protocol FanoutGroup: AnyObject, Sendable {
    func makeLane() -> any FanoutLane
}

/// How a subscriber is reached through lanes: its group, and its identity there (opaque to the hub).
public struct FanoutMembership: Sendable {
    public let group: any FanoutGroup
    public let member: UInt64

    public init(group: any FanoutGroup, member: UInt64) {
        self.group = group
        self.member = member
    }
}
