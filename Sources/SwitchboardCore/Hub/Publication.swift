public import NIOCore

/// A message to publish on one channel: `event` and already-validated JSON `data`.
public struct Publication: Sendable, Equatable {
    public var channel: String
    public var event: String
    /// The `data` field as JSON text, already validated by the caller.
    public var data: String
    /// Conflation key (SPEC §5): on throttled namespaces only the latest message per key survives a window.
    public var key: String?

    public init(channel: String, event: String, data: String, key: String? = nil) {
        self.channel = channel
        self.event = event
        self.data = data
        self.key = key
    }
}

extension Publication {
    /// Why `event` cannot be published, or nil: Socket.IO clients drop the connection on an event named like
    /// one of their own (SPEC §9), so those names are refused on every path, whatever the subscriber's protocol.
    public static func refusal(ofEvent event: String) -> String? {
        SocketPacket.reservedEventNames.contains(event) ? "'\(event)' is reserved by Socket.IO clients; use another event name" : nil
    }
}
