import Foundation
import ServiceLifecycle
import SwitchboardCore

/// The synthetic feed of `serve --demo` (SPEC §1), something to watch on every default namespace:
/// - quotes for a few symbols on `market_data:<SYMBOL>` every 100 ms, conflation key = symbol;
/// - a signal on `trading_signals:<strategy>` every 2 s, the strategies taking turns (premium tiers only);
/// - order fills for the demo trader every 3 s, to user `demo-trader` (channel `user:demo-trader`);
/// - a `system_status` heartbeat every 5 s, and one at start.
struct DemoFeed: Service {
    let node: Node
    static let symbols: [(String, Double)] = [("AAPL", 189.5), ("MSFT", 411.2), ("GOOG", 141.8), ("BTC-USD", 64_250), ("ETH-USD", 3_120)]
    static let strategies = ["momentum", "mean-reversion", "breakout"]
    /// The user whose fills the demo publishes (`serve --demo` prints a token for them).
    static let trader = "demo-trader"
    static let interval: Duration = .milliseconds(100)
    /// Ticks of ``interval`` between signals, fills and heartbeats.
    static let signalEvery = 20, fillEvery = 30, statusEvery = 50

    func run() async throws {
        await cancelWhenGracefulShutdown {
            var prices = Dictionary(uniqueKeysWithValues: Self.symbols)
            var tick = 0
            var orders = 0
            while !Task.isCancelled {
                if tick % Self.statusEvery == 0 {
                    let data = #"{"state":"open","demo":true,"uptimeSeconds":\#(node.uptimeSeconds)}"#
                    _ = try? await node.publisher.publish(Publication(channel: "system_status", event: "status", data: data))
                }
                for (symbol, _) in Self.symbols {
                    let last = (prices[symbol] ?? 100) * (1 + Double.random(in: -0.001...0.001))
                    prices[symbol] = last
                    let spread = last * 0.0002
                    let data = String(
                        format: #"{"symbol":"%@","bid":%.4f,"ask":%.4f,"last":%.4f}"#, symbol, last - spread, last + spread, last)
                    _ = try? await node.publisher.publish(Publication(channel: "market_data:\(symbol)", event: "quote", data: data, key: symbol))
                }
                if tick % Self.signalEvery == Self.signalEvery - 1 {
                    let strategy = Self.strategies[(tick / Self.signalEvery) % Self.strategies.count]
                    let (symbol, _) = Self.symbols[Int.random(in: 0..<Self.symbols.count)]
                    let data = String(
                        format: #"{"strategy":"%@","symbol":"%@","side":"%@","confidence":%.2f,"price":%.4f}"#, strategy, symbol,
                        Bool.random() ? "buy" : "sell", Double.random(in: 0.5...0.99), prices[symbol] ?? 0)
                    _ = try? await node.publisher.publish(Publication(channel: "trading_signals:\(strategy)", event: "signal", data: data))
                }
                if tick % Self.fillEvery == Self.fillEvery - 1 {
                    orders += 1
                    let (symbol, _) = Self.symbols[orders % Self.symbols.count]
                    let data = String(
                        format: #"{"orderId":"demo-%d","symbol":"%@","side":"%@","quantity":%d,"price":%.4f}"#, orders, symbol,
                        orders % 2 == 0 ? "buy" : "sell", Int.random(in: 1...10), prices[symbol] ?? 0)
                    _ = try? await node.publisher.publish(Publication(channel: "", event: "fill", data: data), to: .user(Self.trader))
                }
                tick += 1
                try? await Task.sleep(for: Self.interval)
            }
        }
    }
}
