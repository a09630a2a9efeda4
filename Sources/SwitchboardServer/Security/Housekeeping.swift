import ServiceLifecycle
import SwitchboardCore

/// Once a second: samples the message counters for `stats` rates, and lifts expired IP blocks.
struct Housekeeping: Service {
    let node: Node

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                node.statistics.sample()
                node.expireBlocks()
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }
}
