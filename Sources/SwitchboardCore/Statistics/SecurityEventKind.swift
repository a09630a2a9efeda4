/// The security events of SPEC §7 and §11.
public enum SecurityEventKind: String, Sendable, CaseIterable {
    case authFailed = "auth_failed"
    case ipBlocked = "ip_blocked"
    case ipUnblocked = "ip_unblocked"
    case rateLimited = "rate_limited"
    case connectionLimit = "connection_limit"
    case originRejected = "origin_rejected"
    case adminDisconnect = "admin_disconnect"
    case adminBroadcast = "admin_broadcast"
    /// An HTTP request or upgrade not complete within `request-timeout-ms`.
    case requestTimeout = "request_timeout"
    /// An HTTP bound hit: a head too large, too many pipelined requests, too many HTTP connections from an IP.
    case httpLimit = "http_limit"

    /// Events a client can cause at will, written at most once a second per IP.
    public var isCoalesced: Bool {
        switch self {
        case .rateLimited, .connectionLimit, .originRejected, .authFailed, .requestTimeout, .httpLimit: true
        case .ipBlocked, .ipUnblocked, .adminDisconnect, .adminBroadcast: false
        }
    }
}
