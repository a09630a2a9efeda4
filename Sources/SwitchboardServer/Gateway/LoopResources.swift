import NIOCore
import SwitchboardCore

/// What the connections of one event loop share (one per loop, in ``Node/loops``): each is confined to its loop,
/// so a connection reaches them without a lock.
struct LoopResources: Sendable {
    struct Configuration: Sendable {
        /// `batch-write-delay-ms`: how long `?batch=true` connections' messages wait to leave together.
        var batchDelay: TimeAmount
        /// `heartbeat-ms`.
        var heartbeatInterval: TimeAmount
        /// `compression` and `compression-min-bytes` (SPEC §12).
        var compression: Bool
        var compressionMinimumBytes: Int
        /// `request-timeout-ms`: a connection's time to complete its first request or upgrade.
        var requestTimeout: TimeAmount
    }

    /// Drain batching for the loop's connections' outboxes.
    let drainScheduler: DrainScheduler
    /// The heartbeat timer of the loop's `/ws` connections.
    let heartbeats: HeartbeatTimer
    /// The slot tables through which channel lanes write to connections, one per way of framing.
    let fanouts: LoopFanouts
    /// With `compression`: the loop's permessage-deflate compressor (nil where zlib could not start: the loop's
    /// connections then get plain frames).
    let deflater: MessageDeflater?
    /// The task executor an HTTP connection's task runs on (its channel's loop).
    let taskExecutor: LoopTaskExecutor
    /// The loop's line of `/ws` upgrades, answered a few at a time between the loop's other work.
    let upgradeQueue: UpgradeQueue
    /// The loop's connections still on their first request or upgrade, closed after `request-timeout-ms`.
    let requestDeadlines: RequestDeadlines

    init(eventLoop: any EventLoop, configuration: Configuration, statistics: NodeStatistics) {
        drainScheduler = DrainScheduler(eventLoop: eventLoop, batchDelay: configuration.batchDelay, statistics: statistics)
        heartbeats = HeartbeatTimer(eventLoop: eventLoop, interval: configuration.heartbeatInterval)
        let deflater = configuration.compression ? MessageDeflater(minimumBytes: configuration.compressionMinimumBytes) : nil
        self.deflater = deflater
        fanouts = LoopFanouts(eventLoop: eventLoop, statistics: statistics, batchDelay: configuration.batchDelay, deflater: deflater)
        taskExecutor = LoopTaskExecutor(eventLoop: eventLoop)
        upgradeQueue = UpgradeQueue(eventLoop: eventLoop)
        requestDeadlines = RequestDeadlines(eventLoop: eventLoop, timeout: configuration.requestTimeout)
    }
}
