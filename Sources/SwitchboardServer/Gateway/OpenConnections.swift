import NIOCore
import Synchronization

/// The node's open connections, for a graceful shutdown: each is told to quiesce (NIO's
/// `ChannelShouldQuiesceEvent`: HTTP ends after its in-flight request, a WebSocket closes with 1001), and a
/// connection adopted once the shutdown began is told at once. What NIOExtras' `ServerQuiescingHelper` does
/// for a `ServerBootstrap`'s children, for connections the node accepts itself (``ListeningSocket``).
final class OpenConnections: Sendable {
    private struct State {
        var channels: [ObjectIdentifier: any Channel] = [:]
        var quiescing = false
    }

    private let state = Mutex(State())

    /// Tracks `channel` until it closes (told to quiesce at once if the shutdown has begun).
    func add(_ channel: any Channel) {
        let key = ObjectIdentifier(channel)
        let quiescing = state.withLock { state -> Bool in
            if !state.quiescing { state.channels[key] = channel }
            return state.quiescing
        }
        if quiescing {
            Self.quiesce(channel)
            return
        }
        channel.closeFuture.whenComplete { [self] _ in
            _ = state.withLock { $0.channels.removeValue(forKey: key) }
        }
    }

    /// Tells every open connection to quiesce; those added later are told as they come.
    func quiesceAll() {
        let channels = state.withLock { state -> [any Channel] in
            state.quiescing = true
            defer { state.channels = [:] }
            return Array(state.channels.values)
        }
        for channel in channels { Self.quiesce(channel) }
    }

    /// Connections tracked (for tests).
    var count: Int { state.withLock { $0.channels.count } }

    /// The connections tracked (for tests).
    var channels: [any Channel] { state.withLock { Array($0.channels.values) } }

    private static func quiesce(_ channel: any Channel) {
        channel.eventLoop.execute { channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
    }
}
