/// A channel's subscribers: those reached one by one through ``Subscriber/deliver(_:)``, and those reached
/// through their group's ``FanoutLane`` (one hand-over per lane and message, however many members it has).
struct ChannelMembers {
    private struct LaneMember {
        let group: ObjectIdentifier
        let member: UInt64
    }

    private var direct: [ObjectIdentifier: any Subscriber] = [:]
    private var laned: [ObjectIdentifier: LaneMember] = [:]
    private var lanes: [ObjectIdentifier: any FanoutLane] = [:]

    var count: Int { direct.count + laned.count }
    var isEmpty: Bool { direct.isEmpty && laned.isEmpty }

    func contains(_ subscriber: any Subscriber) -> Bool {
        let id = ObjectIdentifier(subscriber)
        return direct[id] != nil || laned[id] != nil
    }

    /// Adds `subscriber`, which (if it joins a lane) receives the messages numbered above `seq`.
    /// - Returns: false when it was already a member.
    mutating func insert(_ subscriber: any Subscriber, after seq: UInt64) -> Bool {
        guard !contains(subscriber) else { return false }
        let id = ObjectIdentifier(subscriber)
        guard let fanout = subscriber.fanout else {
            direct[id] = subscriber
            return true
        }
        let group = ObjectIdentifier(fanout.group)
        let lane = lanes[group] ?? fanout.group.makeLane()
        lanes[group] = lane
        lane.join(fanout.member, after: seq)
        laned[id] = LaneMember(group: group, member: fanout.member)
        return true
    }

    /// Removes `subscriber`; a lane left empty is dropped. Returns whether it was a member.
    mutating func remove(_ subscriber: any Subscriber) -> Bool {
        let id = ObjectIdentifier(subscriber)
        if direct.removeValue(forKey: id) != nil { return true }
        guard let member = laned.removeValue(forKey: id) else { return false }
        if lanes[member.group]?.leave(member.member) == true { lanes[member.group] = nil }
        return true
    }

    /// Hands `delivery` to every member.
    func deliver(_ delivery: Delivery) {
        for subscriber in direct.values { subscriber.deliver(delivery) }
        for lane in lanes.values { lane.enqueue(delivery) }
    }
}
