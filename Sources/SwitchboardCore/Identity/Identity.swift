/// Who is on the other end of a connection or an API request.
public struct Identity: Sendable, Hashable {
    /// The token's `sub`; `nil` for anonymous.
    public var userId: String?
    public var role: Role
    /// The token's `tier` claim (`free`, `premium`, `enterprise`, ...), if any.
    public var tier: String?
    /// The token's `exp` in seconds since the epoch, if any.
    public var expiresAt: Double?

    public init(userId: String?, role: Role, tier: String? = nil, expiresAt: Double? = nil) {
        self.userId = userId
        self.role = role
        self.tier = tier
        self.expiresAt = expiresAt
    }

    /// An unauthenticated visitor.
    public static let anonymous = Identity(userId: nil, role: .anonymous)

    public var isAuthenticated: Bool { userId != nil }
}
