import SwitchboardCore

/// The node's side of cluster mode (SPEC §8): commands other nodes send, and the figures it announces.
extension Node: ClusterMember {
    public func perform(_ command: ClusterCommand) -> Int {
        switch command {
        case .disconnectConnection(let id, let reason):
            guard let connection = connections.connection(id: id) else { return 0 }
            return gatekeeper.disconnectByAdmin([connection], target: "connection \(id)", by: "an admin on another node", reason: reason)
        case .disconnectUser(let id, let reason):
            return gatekeeper.disconnectByAdmin(connections.connections(ofUser: id), target: "user \(id)", by: "an admin on another node", reason: reason)
        case .disconnectIP(let ip, let reason):
            return gatekeeper.disconnectByAdmin(connections.all.filter { $0.ip == ip }, target: "ip \(ip)", by: "an admin on another node", reason: reason)
        case .block(let ip, let seconds, let reason):
            return gatekeeper.blockHere(ip, for: .seconds(Int64(seconds)), reason: "from another node: \(reason)")
        case .subscribeUser(let id, let channel):
            return subscribeByServer(userId: id, to: channel)
        case .unsubscribeUser(let id, let channel, let reason):
            return unsubscribeByServer(userId: id, from: channel, reason: reason)
        }
    }

    /// SPEC §14: the backend's subscribe of every connection of `userId` on this node; how many it reached.
    func subscribeByServer(userId: String, to channel: String) -> Int {
        let reached = connections.connections(ofUser: userId)
        for connection in reached { connection.subscribedByServer(to: channel) }
        return reached.count
    }

    /// SPEC §14: the backend's unsubscribe of every connection of `userId` on this node; how many it reached.
    func unsubscribeByServer(userId: String, from channel: String, reason: String) -> Int {
        let reached = connections.connections(ofUser: userId)
        for connection in reached { connection.unsubscribedByServer(from: channel, reason: reason) }
        return reached.count
    }

    public func leaseLost(connectionId: String) {
        connections.connection(id: connectionId)?.disconnect(code: .poolLimit, reason: "per-user connection limit reached across the cluster")
    }

    /// Most channels a node announces with their subscriber counts (the busiest), so an announcement stays small.
    static let announcedChannels = 1_000

    public func figures() -> JSONValue {
        let counts = statistics.snapshot()
        let channels = hub.channelSummaries().filter { $0.subscribers > 0 }.sorted { $0.subscribers > $1.subscribers }
            .prefix(Self.announcedChannels)
        return .object([
            "uptimeSeconds": .int(Int64(uptimeSeconds)),
            "connections": .int(Int64(counts.connections)),
            "subscriptions": .int(Int64(counts.subscriptions)),
            "published": .int(Int64(counts.published)),
            "delivered": .int(Int64(counts.delivered)),
            "publishedPerSecond": .double(counts.publishedPerSecond),
            "deliveredPerSecond": .double(counts.deliveredPerSecond),
            "channels": .object(Dictionary(uniqueKeysWithValues: channels.map { ($0.name, JSONValue.int(Int64($0.subscribers))) })),
        ])
    }

    /// The figures `stats` adds up over the cluster.
    static let summedFigures = ["connections", "subscriptions", "published", "delivered"]

    /// Subscribers per live channel over the whole cluster: this node's, plus each other node's announcement.
    func clusterChannelCounts() async -> [(name: String, subscribers: Int)] {
        var counts: [String: Int] = [:]
        for summary in hub.channelSummaries() { counts[summary.name, default: 0] += summary.subscribers }
        if let cluster {
            for figures in await cluster.peers().values {
                guard case .object(let channels)? = figures["channels"] else { continue }
                for (name, value) in channels {
                    if case .int(let subscribers) = value { counts[name, default: 0] += Int(subscribers) }
                }
            }
        }
        return counts.map { ($0.key, $0.value) }.sorted { $0.name < $1.name }
    }
}
