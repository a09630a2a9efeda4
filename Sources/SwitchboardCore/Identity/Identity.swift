/// Who is on the other end of a connection or an API request.
public struct Identity: Sendable, Hashable {
    /// The token's `sub`; `nil` for anonymous.
    public var userId: String?
    public var role: Role
    /// The token's `tier` claim (`free`, `premium`, `enterprise`, ...), if any.
    public var tier: String?
    /// The token's `exp` in seconds since the epoch, if any.
    public var expiresAt: Double?
    /// Channels granted beyond the namespace rules (SPEC §14: a token's `channels` claim, or the connect proxy's);
    /// a trailing `*` grants every topic of a namespace (`room:*`).
    public var grants: [String]

    public init(userId: String?, role: Role, tier: String? = nil, expiresAt: Double? = nil, grants: [String] = []) {
        self.userId = userId
        self.role = role
        self.tier = tier
        self.expiresAt = expiresAt
        self.grants = grants
    }

    /// Whether a grant names `channel`: the channel itself, or `<namespace>:*` for a channel of that namespace.
    public func isGranted(_ channel: String) -> Bool {
        grants.contains { grant in
            grant.hasSuffix(":*") ? channel.hasPrefix(grant.dropLast()) && channel.utf8.count > grant.utf8.count - 1 : grant == channel
        }
    }

    /// Most grants an identity may carry: a token or a backend answer with more is refused.
    public static let maxGrants = 1_000

    /// Why `grants` cannot be an identity's (too many, or one that is neither a channel name nor `namespace:*`), or nil.
    public static func refusal(ofGrants grants: [String]) -> String? {
        guard grants.count <= maxGrants else { return "at most \(maxGrants) channels may be granted, got \(grants.count)" }
        for grant in grants {
            let valid = grant.hasSuffix(":*") ? ChannelName(String(grant.dropLast(2)))?.topic == nil : ChannelName(grant) != nil
            guard valid else { return "'\(grant.prefix(140))' is neither a channel name nor namespace:*" }
        }
        return nil
    }

    /// An unauthenticated visitor.
    public static let anonymous = Identity(userId: nil, role: .anonymous)

    public var isAuthenticated: Bool { userId != nil }
}
