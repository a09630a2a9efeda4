public import CoreMetrics
import DequeModule
import Synchronization

/// What `stats` reads (SPEC §6): every figure at one moment.
extension NodeStatistics {
    /// A consistent-enough copy of every counter (each read is atomic; the set is not one transaction).
    public struct Snapshot: Sendable {
        public var connectionsByRole: [Role: Int]
        public var connectionsByTransport: [Transport: Int]
        public var peakConnections: Int
        public var subscriptions: Int
        public var published: Int
        public var delivered: Int
        public var dropped: Int
        public var publishedPerSecond: Double
        public var deliveredPerSecond: Double
        /// Upgrades admitted, and per second over the last ``NodeStatistics/rateWindow`` (how fast a reconnect
        /// storm is absorbed).
        public var upgradesAccepted: Int
        public var upgradesAcceptedPerSecond: Double
        public var bytesIn: Int
        public var bytesOut: Int
        /// Bytes of compressed frames written, and what those frames would have taken uncompressed.
        public var compressedBytesOut: Int
        public var compressedFramesRawBytes: Int
        public var authSuccesses: Int
        public var authFailures: Int
        public var rateLimited: [Limit: Int]
        public var slowConsumerCloses: Int
        /// Channel streams that restarted under this node (see ``NodeStatistics/recordStreamRestart()``).
        public var streamRestarts: Int
        /// Audit lines dropped because the `--audit-log` file could not keep up.
        public var auditLinesDropped: Int
        public var securityEvents: [SecurityEventKind: Int]

        public var connections: Int { connectionsByRole.values.reduce(0, +) }
        public var anonymousConnections: Int { connectionsByRole[.anonymous] ?? 0 }
    }

    public func snapshot() -> Snapshot {
        let published = published.load(ordering: .relaxed)
        let delivered = delivered.load(ordering: .relaxed)
        let (publishedRate, deliveredRate, acceptedRate) = samples.withLock { samples -> (Double, Double, Double) in
            guard let oldest = samples.first, let newest = samples.last, newest.at > oldest.at else { return (0, 0, 0) }
            let seconds = Double((newest.at - oldest.at).components.seconds)
                + Double((newest.at - oldest.at).components.attoseconds) * 1e-18
            return (
                Double(newest.published - oldest.published) / seconds, Double(newest.delivered - oldest.delivered) / seconds,
                Double(newest.accepted - oldest.accepted) / seconds
            )
        }
        return Snapshot(
            connectionsByRole: connectionsByRole.mapValues { $0.load() },
            connectionsByTransport: connectionsByTransport.mapValues { $0.load() },
            peakConnections: peakConnections.load(ordering: .relaxed),
            subscriptions: subscriptionsTotal.load(ordering: .relaxed),
            published: published, delivered: delivered, dropped: dropped.load(ordering: .relaxed),
            publishedPerSecond: publishedRate, deliveredPerSecond: deliveredRate,
            upgradesAccepted: upgradesAccepted.load(ordering: .relaxed), upgradesAcceptedPerSecond: acceptedRate,
            bytesIn: bytesIn.load(ordering: .relaxed), bytesOut: bytesOut.load(ordering: .relaxed),
            compressedBytesOut: compressedBytesOut.load(ordering: .relaxed),
            compressedFramesRawBytes: compressedFramesRawBytes.load(ordering: .relaxed),
            authSuccesses: authSuccesses.load(ordering: .relaxed), authFailures: authFailures.load(ordering: .relaxed),
            rateLimited: rateLimitedByLimit.mapValues { $0.load() },
            slowConsumerCloses: slowConsumerCloses.load(ordering: .relaxed),
            streamRestarts: streamRestarts.load(ordering: .relaxed),
            auditLinesDropped: auditLinesDropped.load(ordering: .relaxed),
            securityEvents: securityEventsByKind.mapValues { $0.load() })
    }
}
