/// The roles of SPEC §2, lowest to highest: `anonymous` < `user` < `admin` < `super_admin`.
public enum Role: String, Sendable, Codable, CaseIterable, Comparable {
    case anonymous
    case user
    case admin
    case superAdmin = "super_admin"

    private var rank: Int {
        switch self {
        case .anonymous: 0
        case .user: 1
        case .admin: 2
        case .superAdmin: 3
        }
    }

    /// `admin` and `super_admin`: may publish, see every channel and call the admin API.
    public var isAdmin: Bool { self >= .admin }

    public static func < (lhs: Role, rhs: Role) -> Bool { lhs.rank < rhs.rank }
}
