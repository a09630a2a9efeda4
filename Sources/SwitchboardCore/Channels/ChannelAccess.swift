/// Why a channel cannot be subscribed to or published on.
public struct ChannelAccessError: Error, Sendable, Equatable {
    public enum Reason: Sendable, Equatable {
        /// Not a valid channel name, or the topic rule of its namespace is broken.
        case badName
        case unknownNamespace
        case forbidden
    }

    public let reason: Reason
    public let message: String

    public init(_ reason: Reason, _ message: String) {
        self.reason = reason
        self.message = message
    }
}

/// The namespace table and SPEC §4's access rules over it.
public struct ChannelDirectory: Sendable {
    public let namespaces: [String: Namespace]

    public init(namespaces: [Namespace] = Namespace.defaults) {
        self.namespaces = Dictionary(namespaces.map { ($0.name, $0) }, uniquingKeysWith: { _, last in last })
    }

    /// Resolves `name` to its namespace, checking the name and its topic rule.
    public func resolve(_ name: String) throws(ChannelAccessError) -> (ChannelName, Namespace) {
        guard let channel = ChannelName(name) else {
            throw ChannelAccessError(.badName, "invalid channel name: use namespace or namespace:topic of [A-Za-z0-9_.-], at most 128 bytes")
        }
        guard let namespace = namespaces[String(channel.namespace)] else {
            throw ChannelAccessError(.unknownNamespace, "unknown namespace '\(channel.namespace)'")
        }
        switch (namespace.topic, channel.topic) {
        case (.required, nil):
            throw ChannelAccessError(.badName, "namespace '\(namespace.name)' needs a topic, as in \(namespace.name):TOPIC")
        case (.forbidden, .some):
            throw ChannelAccessError(.badName, "namespace '\(namespace.name)' takes no topic")
        default:
            return (channel, namespace)
        }
    }

    /// Checks that `identity` may subscribe to `name` (SPEC §4) and returns the resolved channel.
    @discardableResult
    public func authorizeSubscribe(_ name: String, by identity: Identity) throws(ChannelAccessError) -> (ChannelName, Namespace) {
        let (channel, namespace) = try resolve(name)
        // SPEC §14: a grant admits beyond the rules; a `grant: required` namespace admits nothing else.
        if identity.role.isAdmin || identity.isGranted(name) { return (channel, namespace) }
        if namespace.grantRequired {
            throw ChannelAccessError(.forbidden, "'\(namespace.name)' admits only the channels granted to you")
        }
        guard identity.role >= namespace.minRole else {
            throw ChannelAccessError(.forbidden, "'\(namespace.name)' needs role \(namespace.minRole.rawValue) or higher")
        }
        if let tiers = namespace.tiers, !tiers.contains(identity.tier ?? "") {
            throw ChannelAccessError(.forbidden, "'\(namespace.name)' needs tier \(tiers.joined(separator: " or "))")
        }
        if namespace.ownerOnly, channel.topic.map(String.init) != identity.userId {
            throw ChannelAccessError(.forbidden, "only the user '\(channel.topic ?? "")' may subscribe to \(channel)")
        }
        return (channel, namespace)
    }
}
