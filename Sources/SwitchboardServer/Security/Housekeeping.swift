import ServiceLifecycle
import SwitchboardCore

/// Once a second: samples the message counters for `stats` rates, lifts expired IP blocks and writes the
/// audit log's broadcast summaries.
struct Housekeeping: Service {
    let node: Node

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                node.statistics.sample()
                node.gatekeeper.expireBlocks()
                node.gatekeeper.audit.writeDueSummaries()
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }
}
