/// One row of the namespace table (SPEC §4): who may subscribe and how messages are delivered.
///
/// Loaded from the `namespaces` table of the configuration file; ``Namespace/defaults`` is SPEC's table.
public struct Namespace: Sendable, Hashable, Decodable {
    /// Whether channels of this namespace carry a topic (`market_data:AAPL`) or not (`system_status`).
    public enum TopicRule: String, Sendable, Hashable, Codable {
        case required
        case forbidden
        case optional
    }

    public var name: String
    /// Lowest role that may subscribe. Admins may always subscribe.
    public var minRole: Role
    /// When set, non-admin subscribers need one of these tiers.
    public var tiers: [String]?
    /// `user:<id>`: only the user `<id>` (and admins) may subscribe.
    public var ownerOnly: Bool
    public var topic: TopicRule
    /// Throttle window in milliseconds; 0 delivers at once.
    public var throttleMs: Int
    /// Within a throttle window, keep only the latest message per `key`.
    public var conflate: Bool
    /// Keep each channel's latest message and send it to new subscribers.
    public var lastValue: Bool
    /// How many recent messages per channel are kept for recovery with `since`.
    public var history: Int
    /// `grant: required` (SPEC §14): non-admins subscribe only to channels granted to them (a token's or the connect
    /// proxy's `channels`) or admitted by the subscribe proxy.
    public var grantRequired: Bool
    /// `subscribe-proxy: true` (SPEC §14): a subscribe the rules and grants do not allow is asked of the platform's
    /// backend (`subscribe-proxy-url`).
    public var subscribeProxy: Bool

    public init(
        name: String,
        minRole: Role = .anonymous,
        tiers: [String]? = nil,
        ownerOnly: Bool = false,
        topic: TopicRule = .optional,
        throttleMs: Int = 0,
        conflate: Bool = false,
        lastValue: Bool = false,
        history: Int = 0,
        grantRequired: Bool = false,
        subscribeProxy: Bool = false
    ) {
        self.name = name
        self.minRole = minRole
        self.tiers = tiers
        self.ownerOnly = ownerOnly
        self.topic = topic
        self.throttleMs = throttleMs
        self.conflate = conflate
        self.lastValue = lastValue
        self.history = history
        self.grantRequired = grantRequired
        self.subscribeProxy = subscribeProxy
    }

    /// Whether channels of this namespace keep anything after their last subscriber leaves.
    public var retainsMessages: Bool { lastValue || history > 0 }

    /// SPEC §4's default namespace table.
    public static let defaults: [Namespace] = [
        Namespace(
            name: "market_data", topic: .required, throttleMs: 100, conflate: true, lastValue: true, history: 100),
        Namespace(name: "trading_signals", minRole: .user, tiers: ["premium", "enterprise"], topic: .required, history: 100),
        Namespace(name: "system_status", topic: .forbidden, lastValue: true),
        Namespace(name: "user", minRole: .user, ownerOnly: true, topic: .required, history: 100),
        Namespace(name: "admin", minRole: .admin, topic: .forbidden),
    ]

    enum CodingKeys: String, CodingKey {
        case name, minRole = "min-role", tiers, ownerOnly = "owner-only", topic, throttleMs = "throttle-ms", conflate
        case lastValue = "last-value", history, grant = "grant", subscribeProxy = "subscribe-proxy"
    }

    /// The `grant` key's values.
    enum GrantRule: String, Decodable {
        case required, optional
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(name: try container.decode(String.self, forKey: .name))
        minRole = try container.decodeIfPresent(Role.self, forKey: .minRole) ?? minRole
        tiers = try container.decodeIfPresent([String].self, forKey: .tiers)
        ownerOnly = try container.decodeIfPresent(Bool.self, forKey: .ownerOnly) ?? ownerOnly
        topic = try container.decodeIfPresent(TopicRule.self, forKey: .topic) ?? topic
        throttleMs = try container.decodeIfPresent(Int.self, forKey: .throttleMs) ?? throttleMs
        conflate = try container.decodeIfPresent(Bool.self, forKey: .conflate) ?? conflate
        lastValue = try container.decodeIfPresent(Bool.self, forKey: .lastValue) ?? lastValue
        history = try container.decodeIfPresent(Int.self, forKey: .history) ?? history
        grantRequired = try container.decodeIfPresent(GrantRule.self, forKey: .grant) == .required
        subscribeProxy = try container.decodeIfPresent(Bool.self, forKey: .subscribeProxy) ?? subscribeProxy
        guard ChannelName(name)?.topic == nil else {
            throw DecodingError.dataCorruptedError(
                forKey: .name, in: container, debugDescription: "namespace name must match [A-Za-z0-9_.-]+")
        }
        guard throttleMs >= 0, history >= 0, history <= 100_000 else {
            throw DecodingError.dataCorruptedError(
                forKey: .history, in: container, debugDescription: "throttle-ms and history must be >= 0, history <= 100000")
        }
    }
}
