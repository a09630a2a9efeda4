import Logging
import RedisBroker
import ServiceLifecycle

/// Keeps a cluster node's Redis link for the life of the server (SPEC §8): started with the node, it waits a
/// few seconds for Redis (a node whose Redis is down still starts, degraded, and keeps trying), and on
/// shutdown takes the node out of the registry and closes the link, after the server and the WebSocket drain.
struct ClusterLink: Service {
    let broker: RedisBroker
    let logger: Logger

    func run() async throws {
        do {
            try await broker.start()
            logger.info("joined the cluster", metadata: ["sb.redis": "\(broker.configuration.url)"])
        } catch {
            logger.warning(
                "Redis not reachable: serving this node's clients only, and retrying",
                metadata: ["sb.redis": "\(broker.configuration.url)"])
        }
        try? await gracefulShutdown()
        await broker.stop()
    }
}
