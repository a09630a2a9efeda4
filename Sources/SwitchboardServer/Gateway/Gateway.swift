public import NIOCore
import Synchronization

/// What a node's connection layer shares between its connections: the event loops and each one's
/// ``LoopResources``, the TLS identity, and the open Engine.IO sessions.
final class Gateway: Sendable {
    /// The node's event loops.
    let eventLoopGroup: any EventLoopGroup
    /// What the connections of each event loop share (drains, heartbeats, lanes, compressor, upgrade line, …).
    let loops: PerEventLoop<LoopResources>
    /// The TLS identity when `tls-cert` is set (SPEC §12); its connections never write to the socket directly.
    let tls: TLSCertificates?
    /// Open Engine.IO sessions by `sid` (SPEC §9), admitted or not yet.
    let engineSessions = EngineSessions()
    /// How connections were served, for tests: `/ws` upgrades answered without NIO's HTTP pipeline
    /// (``DirectUpgradeHandler``), accepted or refused…
    let directUpgrades = Atomic<Int>(0)
    /// … and connections handed to a Swift task of their own (``GatewayServer``): those serving HTTP, never WebSockets.
    let httpConnectionTasks = Atomic<Int>(0)

    init(eventLoopGroup: any EventLoopGroup, tls: TLSCertificates?, makeLoopResources: @escaping @Sendable (any EventLoop) -> LoopResources) {
        self.eventLoopGroup = eventLoopGroup
        self.tls = tls
        self.loops = PerEventLoop(group: eventLoopGroup, make: makeLoopResources)
    }
}
