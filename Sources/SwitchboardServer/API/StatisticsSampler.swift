import ServiceLifecycle
import SwitchboardCore

/// Samples the message counters once a second for the per-second rates of `stats`.
struct StatisticsSampler: Service {
    let statistics: NodeStatistics

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                statistics.sample()
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }
}
