/// The error codes of SPEC §3, used in WebSocket `error` frames and HTTP error bodies alike.
public struct ErrorCode: Sendable, Hashable, CustomStringConvertible {
    public let description: String
    private init(_ code: String) { description = code }

    public static let badRequest = ErrorCode("BAD_REQUEST")
    public static let unauthorized = ErrorCode("UNAUTHORIZED")
    public static let forbidden = ErrorCode("FORBIDDEN")
    public static let unknownChannel = ErrorCode("UNKNOWN_CHANNEL")
    public static let rateLimited = ErrorCode("RATE_LIMITED")
    public static let subscriptionLimit = ErrorCode("SUBSCRIPTION_LIMIT")
    public static let internalError = ErrorCode("INTERNAL")
    public static let ipBlocked = ErrorCode("IP_BLOCKED")
    public static let originNotAllowed = ErrorCode("ORIGIN_NOT_ALLOWED")
    public static let connectionLimit = ErrorCode("CONNECTION_LIMIT")
    public static let notFound = ErrorCode("NOT_FOUND")
    public static let methodNotAllowed = ErrorCode("METHOD_NOT_ALLOWED")
    /// The platform's backend (SPEC §14's proxies) did not answer in time or is unreachable.
    public static let unavailable = ErrorCode("UNAVAILABLE")
}

/// The close codes of SPEC §3.
public enum CloseCode: UInt16, Sendable {
    case normal = 1000
    case goingAway = 1001
    case protocolError = 1002
    case unsupportedData = 1003
    case policyViolation = 1008
    case messageTooBig = 1009
    case disconnectedByAdmin = 4000
    case authTimeout = 4001
    case tokenExpired = 4004
    case rateLimitAbuse = 4008
    case slowConsumer = 4009
    case poolLimit = 4029
}
