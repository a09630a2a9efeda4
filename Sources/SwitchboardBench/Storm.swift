import ArgumentParser
import Foundation
import Histogram
import NIOCore
import NIOPosix
import NIOSSL
import NIOConcurrencyHelpers
import Synchronization

/// `idle`: C clients connect and subscribe as fast as the server takes them (a reconnect storm, 200 dialling at
/// a time), then are held: connects + subscribes per second, server CPU per connection, memory per connection.
struct Idle: AsyncParsableCommand {
    @OptionGroup var common: Common
    @Option(help: "Connections.") var connections: Int = 10_000
    @Flag(help: "Switchboard: subscribe in the upgrade request (?subscribe=), one round trip instead of two.")
    var subscribeInUrl = false

    func run() async throws {
        let peer = try common.peer
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let before = ProcessStats.residentKiB(pid: common.serverPid)
        let cpuBefore = ProcessStats.cpuTicks(pid: common.serverPid)
        let generatorBefore = ProcessStats.cpuTicks(pid: getpid())
        let audience = try await Audience.open(
            count: connections, peer: peer, common: common, batch: false, subscribeInURL: subscribeInUrl, on: loop)
        let cpuAfter = ProcessStats.cpuTicks(pid: common.serverPid)
        let generatorAfter = ProcessStats.cpuTicks(pid: getpid())
        let microseconds = { (ticks: Int) in (Double(ticks) / ProcessStats.ticksPerSecond * 1e6 / Double(connections)).rounded() }
        try await Task.sleep(for: .seconds(2))
        let after = ProcessStats.residentKiB(pid: common.serverPid)
        let result: [String: Any] = [
            "scenario": "idle", "target": peer.rawValue, "connections": connections,
            "connects_subscribes_per_second": Int(Double(connections) / audience.seconds),
            "server_user_us_per_connection": microseconds(cpuAfter.user - cpuBefore.user),
            "server_total_us_per_connection": microseconds(cpuAfter.user + cpuAfter.system - cpuBefore.user - cpuBefore.system),
            // The generator's own CPU (one core): at about the storm's length in seconds it, not the server, set the rate.
            "generator_total_us_per_connection": microseconds(
                generatorAfter.user + generatorAfter.system - generatorBefore.user - generatorBefore.system),
            "seconds": (audience.seconds * 100).rounded() / 100,
            "server_rss_kib_before": before, "server_rss_kib_after": after,
            "server_kib_per_connection": (Double(after - before) / Double(connections) * 100).rounded() / 100,
        ]
        print(String(decoding: try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys]), as: UTF8.self))
        await audience.close()
    }
}

/// `storm`: one subscriber receives R broadcasts a second while C other clients connect and subscribe (to another
/// channel) as fast as the server takes them: how long the storm takes, and what the subscriber and `stats` see
/// meanwhile against the seconds before it.
struct Storm: AsyncParsableCommand {
    @OptionGroup var common: Common
    @Option(help: "Clients in the storm.") var connections: Int = 19_000
    @Option(help: "Broadcasts per second to the watching subscriber.") var rate: Int = 20
    @Option(help: "Seconds of broadcasts before the storm (the baseline).") var baselineSeconds: Int = 3
    @Option(help: "A CPU for the watcher's, its publisher's and the stats probe's threads (default: the generator's).")
    var probeCpu: Int?

    func run() async throws {
        let peer = try common.publishedPeer
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        // The watcher and its publisher have a thread of their own, like the stats probe: on the storm's loop their
        // reads would wait behind the generator's own work for 19,000 connections and time the generator.
        // With --probe-cpu, off the storm's CPU, which the generator saturates: a delivery is then timed by the
        // server, not by the watcher's thread waiting for the storm's to yield the CPU.
        func oneThread() -> MultiThreadedEventLoopGroup {
            probeCpu.map { MultiThreadedEventLoopGroup(pinnedCPUIDs: [$0]) } ?? MultiThreadedEventLoopGroup(numberOfThreads: 1)
        }
        let watcherLoopGroup = oneThread()
        let watcherLoop = watcherLoopGroup.next()
        let watcher = try await Audience.open(count: 1, peer: peer, common: common, batch: false, on: watcherLoop)
        let publisher = PublisherHandler()
        let publishChannel = try await ClientBootstrap(group: watcherLoop)
            .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(publisher) } }
            .connect(host: "127.0.0.1", port: common.port).get()
        let probeLoop = oneThread()
        let probe = try await StatsProbe.connect(port: common.port, token: common.token, on: probeLoop.next())
        // Broadcasts every 1/rate s on the loop, bounded: they stop when the run ends or after 10 minutes.
        let started = NIODeadline.now()
        let sent = NIOLockedValueBox(0)
        let ticker = watcherLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(Int64(1000 / max(1, rate)))) { task in
            let n = sent.withLockedValue { count -> Int in
                count += 1
                return count
            }
            guard NIODeadline.now() - started < .minutes(10) else { return task.cancel() }
            publishChannel.writeAndFlush(
                peer.publishRequest(channel: common.channel, n: n, sentAt: NIODeadline.now().uptimeNanoseconds, token: common.token, padding: "x"),
                promise: nil)
        }
        func watcherTally() async throws -> Tally { try await watcher.tally(on: watcherLoop) }
        func resetWatcher() async throws { try await watcher.resetTally(on: watcherLoop) }
        let stormDone = Atomic<Bool>(false)

        // Baseline: broadcasts and stats with no storm.
        let baselineProbe = Task { (try? await probe.run(every: .milliseconds(100), limit: 10 * baselineSeconds) { false }) ?? [] }
        try await Task.sleep(for: .seconds(baselineSeconds))
        let baselineStats = await baselineProbe.value.sorted()
        let baseline = try await watcherTally()
        try await resetWatcher()

        // The storm, to another channel, with stats timed every 100 ms while it lasts.
        var stormCommon = common
        // Same namespace, another topic (nchan's channel ids are words: another word).
        stormCommon.channel = common.channel + (peer == .nchan ? "_storm" : ":storm")
        let stormProbe = Task { (try? await probe.run(every: .milliseconds(100), limit: 6_000) { stormDone.load(ordering: .relaxed) }) ?? [] }
        let storm = try await Audience.open(count: connections, peer: peer, common: stormCommon, batch: false, on: loop)
        stormDone.store(true, ordering: .relaxed)
        let stormStats = await stormProbe.value.sorted()
        let during = try await watcherTally()
        ticker.cancel()
        try? await probe.channel.close()
        try? await probeLoop.shutdownGracefully()

        func ms(_ nanoseconds: UInt64) -> Double { (Double(nanoseconds) / 1e4).rounded() / 100 }
        func percentile(_ values: [UInt64], _ fraction: Double) -> Double {
            values.isEmpty ? 0 : ms(values[min(values.count - 1, Int(Double(values.count) * fraction))])
        }
        let result: [String: Any] = [
            "scenario": "storm", "target": peer.rawValue, "connections": connections, "rate": rate,
            "storm_seconds": (storm.seconds * 100).rounded() / 100,
            "connects_subscribes_per_second": Int(Double(connections) / storm.seconds),
            "baseline_received": baseline.received, "baseline_latency_ms_p50": ms(baseline.latency.valueAtPercentile(50)),
            "baseline_latency_ms_p99": ms(baseline.latency.valueAtPercentile(99)),
            "storm_received": during.received, "storm_latency_ms_p50": ms(during.latency.valueAtPercentile(50)),
            "storm_latency_ms_p99": ms(during.latency.valueAtPercentile(99)), "storm_latency_ms_max": ms(during.latency.maxRecorded),
            "storm_out_of_order": during.outOfOrder, "storm_duplicated": during.duplicates,
            "baseline_stats_ms_p50": percentile(baselineStats, 0.5), "baseline_stats_ms_p99": percentile(baselineStats, 0.99),
            "storm_stats_requests": stormStats.count, "storm_stats_ms_p50": percentile(stormStats, 0.5),
            "storm_stats_ms_p99": percentile(stormStats, 0.99), "storm_stats_ms_max": stormStats.last.map(ms) ?? 0,
        ]
        print(String(decoding: try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys]), as: UTF8.self))
        try? await publishChannel.close()
        await storm.close()
        await watcher.close()
        try? await watcherLoopGroup.shutdownGracefully()
    }
}
