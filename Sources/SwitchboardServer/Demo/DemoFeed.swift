import Foundation
import ServiceLifecycle
import SwitchboardCore

/// The synthetic market-data feed of `serve --demo` (SPEC §1): quotes for a few symbols on
/// `market_data:<SYMBOL>` every 100 ms, conflation key = symbol, and a `system_status` message at start.
struct DemoFeed: Service {
    let node: Node
    static let symbols: [(String, Double)] = [("AAPL", 189.5), ("MSFT", 411.2), ("GOOG", 141.8), ("BTC-USD", 64_250), ("ETH-USD", 3_120)]
    static let interval: Duration = .milliseconds(100)

    func run() async throws {
        _ = try? await node.publish(Publication(channel: "system_status", event: "status", data: #"{"state":"open","demo":true}"#))
        await cancelWhenGracefulShutdown {
            var prices = Dictionary(uniqueKeysWithValues: Self.symbols)
            while !Task.isCancelled {
                for (symbol, _) in Self.symbols {
                    let last = (prices[symbol] ?? 100) * (1 + Double.random(in: -0.001...0.001))
                    prices[symbol] = last
                    let spread = last * 0.0002
                    let data = String(
                        format: #"{"symbol":"%@","bid":%.4f,"ask":%.4f,"last":%.4f}"#, symbol, last - spread, last + spread, last)
                    _ = try? await node.publish(Publication(channel: "market_data:\(symbol)", event: "quote", data: data, key: symbol))
                }
                try? await Task.sleep(for: Self.interval)
            }
        }
    }
}
