import SwitchboardCore

/// How a client's identity and channel access are established beyond the namespace table: its token (SPEC §2),
/// and, when one is configured, the platform's backend (SPEC §14's connect and subscribe proxies).
public struct Authentication: Sendable {
    public let tokens: TokenVerifier
    /// The platform's backend, when `connect-proxy-url` or `subscribe-proxy-url` is set.
    public let backend: PlatformBackend?

    /// Whether an upgrade or CONNECT without a token goes to the connect proxy.
    var hasConnectProxy: Bool { backend?.configuration.connectURL != nil }
}
