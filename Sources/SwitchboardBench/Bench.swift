import ArgumentParser
import Foundation
import Histogram
import NIOCore
import NIOPosix
import NIOSSL
import NIOConcurrencyHelpers
import Synchronization

/// The load generator of `scripts/bench`: one process, one event loop, every loop bounded in count and time.
@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard-bench", abstract: "WebSocket fan-out load generator (loopback only).",
        subcommands: [Fanout.self, Idle.self, Storm.self, FloorServer.self])
}

/// Options shared by every scenario.
struct Common: ParsableArguments {
    @Option(help: "switchboard, socketio (Switchboard's Socket.IO endpoint), ws, nchan, or floor (floor-server: idle only).") var target: String = "switchboard"
    @Option(help: "Server port on 127.0.0.1.") var port: Int
    @Option(help: "Server PID, for its CPU time and memory.") var serverPid: Int32
    @Option(help: "Admin token (switchboard).") var token: String = ""
    @Option(help: "Channel to use.") var channel: String = "bench"
    @Option(help: "Token every subscriber upgrades with (?token=), for the JWT path.") var subscriberToken: String = ""
    @Option(help: "Cookie every subscriber upgrades with, for the connect proxy (SPEC §14).") var subscriberCookie: String = ""
    @Option(help: "More server ports (comma-separated): subscribers and publishers are spread over all of them (a cluster).")
    var alsoPorts: String = ""
    @Option(help: "More PIDs (comma-separated) whose CPU counts as the server's (the other nodes, Redis).") var alsoPids: String = ""

    @Flag(help: "Connect subscribers and publishers over TLS (the server's certificate is not verified: loopback only).")
    var tls = false
    @Flag(help: "Subscribers offer permessage-deflate (switchboard with compression on) and inflate what comes compressed.")
    var deflate = false

    /// A TLS client context for `--tls` runs, nil otherwise.
    func tlsContext() throws -> NIOSSLContext? {
        guard tls else { return nil }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        return try NIOSSLContext(configuration: configuration)
    }

    /// Every server port: subscriber i connects to `ports[i % count]`, publisher p publishes through `ports[p]`.
    var ports: [Int] { [port] + alsoPorts.split(separator: ",").compactMap { Int($0) } }
    /// Every PID whose CPU time is summed as the server's.
    var serverPids: [Int32] { [serverPid] + alsoPids.split(separator: ",").compactMap { Int32($0) } }

    var peer: Target {
        get throws {
            guard let peer = Target(rawValue: target) else { throw ValidationError("--target must be switchboard, socketio, ws, nchan or floor") }
            return peer
        }
    }

    /// ``peer``, for scenarios that publish: every peer but the floor server, which takes none.
    var publishedPeer: Target {
        get throws {
            let peer = try peer
            guard peer != .floor else { throw ValidationError("the floor server takes the idle scenario only") }
            return peer
        }
    }
}

/// Subscribers opened for one run.
struct Audience {
    let channels: [any Channel]
    /// What all of them saw; confined to their event loop.
    let shared: SharedTally
    let seconds: Double

    /// Source addresses connections take in turn, 127.0.0.2 onwards: runs one after another leave tens of
    /// thousands of ports in TIME_WAIT, more than one address's ephemeral range holds.
    static let sourceAddresses = 8

    /// Linux's `IP_BIND_ADDRESS_NO_PORT`: binding a source address leaves the port to `connect`, which picks one
    /// free for the whole address pair, instead of `bind` searching every bound port of the address (most of
    /// the generator's kernel time in a storm, which then throttled the rate it measured).
    static let bindAddressNoPort = ChannelOptions.Types.SocketOption(
        level: NIOBSDSocket.OptionLevel(rawValue: 0 /* IPPROTO_IP */), name: NIOBSDSocket.Option(rawValue: 24))

    /// Clients dialling at once while a run opens its subscribers.
    static let inFlight = 200

    /// Opens `count` subscribed connections, 200 at a time, spread over ``sourceAddresses`` source addresses;
    /// ``seconds`` runs until the last is subscribed (its `subscribed` reply read, or its upgrade for nchan).
    /// - Parameter subscribeInURL: Switchboard only: subscribe with the upgrade's `?subscribe=` (one round trip)
    ///   instead of a `subscribe` message after it.
    static func open(
        count: Int, peer: Target, common: Common, batch: Bool, subscribeInURL: Bool = false, on loop: any EventLoop
    ) async throws -> Audience {
        let start = ContinuousClock.now
        let ports = common.ports
        var path = peer.upgradePath(channel: common.channel, batch: batch)
        if subscribeInURL { path += (path.contains("?") ? "&" : "?") + "subscribe=\(common.channel)" }
        if !common.subscriberToken.isEmpty { path += (path.contains("?") ? "&" : "?") + "token=\(common.subscriberToken)" }
        let offer = (common.deflate ? "Sec-WebSocket-Extensions: permessage-deflate\r\n" : "")
            + (common.subscriberCookie.isEmpty ? "" : "Cookie: \(common.subscriberCookie)\r\n")
        let request = ByteBuffer(string:
            "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(common.port)\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            + "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\(offer)\r\n")
        // Every subscriber lives on `loop`: one decompressor serves them all (messages are independent streams).
        let inflater = common.deflate ? try MessageInflater() : nil
        let subscribe = subscribeInURL ? nil : peer.subscribeMessage(channel: common.channel).map { ByteBuffer(string: $0) }
        let awaitsSubscribed = subscribeInURL || subscribe != nil
        let tls = try common.tlsContext()
        let shared = SharedTally()
        let servers = try ports.map { try SocketAddress(ipAddress: "127.0.0.1", port: $0) }
        let sources = try (0..<Self.sourceAddresses).map { try SocketAddress(ipAddress: "127.0.0.\(2 + $0)", port: 0) }
        // Dialled on `loop` itself, with addresses made once: no task, thread hop or name lookup per client, whose
        // cost would be the generator's and cap the rate it measures.
        let dialler = try await loop.submit {
            Dialler(loop: loop, count: count) { index in
                let upgraded = loop.makePromise(of: Void.self)
                let handler = SubscriberHandler(
                    request: request, subscribeMessage: subscribe, awaitsSubscribed: awaitsSubscribed, upgraded: upgraded, tally: shared,
                    publishers: ports.count, handshake: peer.handshake, subscribedKey: peer.subscribedKey,
                    inflater: inflater)
                // Bounded: a peer that never answers the subscribe fails the run instead of hanging it.
                let timeout = loop.scheduleTask(in: .seconds(30)) { upgraded.fail(ChannelError.connectTimeout(.seconds(30))) }
                upgraded.futureResult.whenComplete { _ in timeout.cancel() }
                return ClientBootstrap(group: loop)
                    .channelOption(.socketOption(.so_reuseaddr), value: 1)
                    .channelOption(Self.bindAddressNoPort, value: 1)
                    .bind(to: sources[index % sources.count])
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: nil)) }
                            try channel.pipeline.syncOperations.addHandler(handler)
                        }
                    }
                    .connect(to: servers[index % servers.count])
                    .flatMap { channel in upgraded.futureResult.map { channel } }
            }
        }.get()
        let channels = try await loop.flatSubmit { dialler.start(inFlight: Self.inFlight) }.get()
        let elapsed = ContinuousClock.now - start
        return Audience(channels: channels, shared: shared, seconds: elapsed.seconds)
    }

    /// What the subscribers saw so far (`loop` is theirs).
    func tally(on loop: any EventLoop) async throws -> Tally {
        try await loop.submit { shared.tally }.get()
    }

    /// Starts a new tally (the storm scenario measures the storm apart from the time before it).
    func resetTally(on loop: any EventLoop) async throws {
        try await loop.submit { shared.tally = Tally() }.get()
    }

    func close() async {
        for channel in channels { try? await channel.close() }
    }
}

/// Opens `count` clients on one event loop, `inFlight` dialling at once: each one done starts the next (waves of
/// a fixed size would wait for each wave's slowest). The first failure fails the whole.
// @unchecked Sendable: confined to `loop`.
final class Dialler: @unchecked Sendable {
    private let loop: any EventLoop
    private let count: Int
    /// Connects client `index` and succeeds once it is upgraded and subscribed.
    private let openOne: (Int) -> EventLoopFuture<any Channel>
    private var next = 0
    private var channels: [any Channel] = []
    private let done: EventLoopPromise<[any Channel]>

    init(loop: any EventLoop, count: Int, openOne: @escaping (Int) -> EventLoopFuture<any Channel>) {
        self.loop = loop
        self.count = count
        self.openOne = openOne
        self.done = loop.makePromise()
        channels.reserveCapacity(count)
    }

    /// Starts dialling; the future has every client, in the order they were ready.
    func start(inFlight: Int) -> EventLoopFuture<[any Channel]> {
        loop.preconditionInEventLoop()
        if count == 0 { done.succeed([]) }
        for _ in 0..<min(inFlight, count) { dialNext() }
        return done.futureResult
    }

    private func dialNext() {
        let index = next
        next += 1
        openOne(index).whenComplete { [self] result in
            switch result {
            case .success(let channel):
                channels.append(channel)
                if channels.count == count {
                    done.succeed(channels)
                } else if next < count {
                    dialNext()
                }
            case .failure(let error):
                next = count
                done.fail(error)
            }
        }
    }
}

/// `fanout`: S subscribers of one channel, R publishes a second over HTTP for T seconds.
struct Fanout: AsyncParsableCommand {
    @OptionGroup var common: Common
    @Option(help: "Subscribers.") var subscribers: Int = 1_000
    @Option(help: "Publishes per second.") var rate: Int = 100
    @Option(help: "Seconds of publishing.") var seconds: Int = 10
    @Option(help: "Bytes of padding in each message.") var padding: Int = 60
    @Flag(help: "Send a market quote (the demo's fields and more, about 380 bytes as delivered) instead of padding.")
    var quote = false
    @Flag(help: "Open subscribers with ?batch=true (switchboard).") var batch = false
    @Flag(help: "Time GET /stats (switchboard) every 100 ms while publishing.") var probeStats = false

    func run() async throws {
        let peer = try common.publishedPeer
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let audience = try await Audience.open(count: subscribers, peer: peer, common: common, batch: batch, on: loop)
        try await Task.sleep(for: .seconds(1))  // subscriptions settle
        // One publisher per server port; message n goes through publisher n % ports.
        var publishers: [PublisherHandler] = []
        var publishChannels: [any Channel] = []
        for port in common.ports {
            let publisher = PublisherHandler()
            publishers.append(publisher)
            let tls = try common.tlsContext()
            publishChannels.append(try await ClientBootstrap(group: loop)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: nil)) }
                        try channel.pipeline.syncOperations.addHandler(publisher)
                    }
                }
                .connect(host: "127.0.0.1", port: port).get())
        }
        let pad = String(repeating: "x", count: padding)
        let cpuBefore = ProcessStats.cpuTicks(pids: common.serverPids)
        let generatorBefore = ProcessStats.cpuTicks(pid: getpid())
        let total = rate * seconds
        let started = NIODeadline.now()
        let publishing = Atomic<Bool>(true)
        // The probe has a thread of its own: on the subscribers' loop its answers would wait behind the
        // generator's own reading of each broadcast and time the generator, not the server.
        let probeLoop = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let probe = probeStats ? try await StatsProbe.connect(port: common.port, token: common.token, on: probeLoop.next()) : nil
        let probeTimes = Task { () -> [UInt64] in
            guard let probe else { return [] }
            return (try? await probe.run(every: .milliseconds(100), limit: 600) { !publishing.load(ordering: .relaxed) }) ?? []
        }
        // One tick a millisecond sends what the schedule owes so far: publishes stay on schedule.
        let sent = try await loop.submit { () -> EventLoopFuture<Int> in
            let done = loop.makePromise(of: Int.self)
            let count = NIOLoopBoundBox(0, eventLoop: loop)
            loop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(1)) { task in
                let elapsed = Double((NIODeadline.now() - started).nanoseconds) / 1e9
                let due = min(total, Int(elapsed * Double(rate)) + 1)
                while count.value < due {
                    count.value += 1
                    let request = peer.publishRequest(
                        channel: common.channel, n: count.value, sentAt: NIODeadline.now().uptimeNanoseconds, token: common.token,
                        padding: pad, quote: quote)
                    publishChannels[count.value % publishChannels.count].write(request, promise: nil)
                }
                for channel in publishChannels { channel.flush() }
                if count.value >= total {
                    task.cancel()
                    done.succeed(count.value)
                }
            }
            return done.futureResult
        }.get().get()
        let publishSeconds = Double((NIODeadline.now() - started).nanoseconds) / 1e9
        publishing.store(false, ordering: .relaxed)
        let statsTimes = await probeTimes.value.sorted()
        try? await probe?.channel.close()
        try? await probeLoop.shutdownGracefully()
        // Drain: wait until deliveries stop arriving (at most 10 s).
        var last = -1
        for _ in 0..<100 {
            try await Task.sleep(for: .milliseconds(100))
            let now = try await audience.tally(on: loop).received
            if now == last && now >= sent * subscribers { break }
            if now == last && now > 0 { break }
            last = now
        }
        let cpuAfter = ProcessStats.cpuTicks(pids: common.serverPids)
        let generatorAfter = ProcessStats.cpuTicks(pid: getpid())
        let tally = try await audience.tally(on: loop)
        let answered = try await loop.submit { publishers.reduce(0) { $0 + $1.answered } }.get()
        let expected = sent * subscribers
        let utime = Double(cpuAfter.user - cpuBefore.user) / ProcessStats.ticksPerSecond
        let stime = Double(cpuAfter.system - cpuBefore.system) / ProcessStats.ticksPerSecond
        let delivered = tally.received - tally.duplicates
        // The reading side's CPU too: loopback TCP work can move between sender and reader (see docs/benchmarks.md).
        let generatorSeconds = Double(generatorAfter.user + generatorAfter.system - generatorBefore.user - generatorBefore.system)
            / ProcessStats.ticksPerSecond
        func perDelivery(_ seconds: Double) -> Double { delivered > 0 ? round(seconds * 1e6 / Double(delivered) * 1000) / 1000 : 0 }
        var result: [String: Any] = [
            "scenario": "fanout", "target": peer.rawValue, "batch": batch, "nodes": common.ports.count, "subscribers": subscribers, "rate": rate,
            "seconds": seconds, "published": sent, "publish_seconds": round(publishSeconds * 100) / 100,
            "publishes_answered": answered, "delivered": delivered, "delivered_per_second": Int(Double(delivered) / publishSeconds),
            "lost": max(0, expected - delivered), "duplicated": tally.duplicates, "out_of_order": tally.outOfOrder,
            "latency_ms_p50": ms(tally.latency.valueAtPercentile(50)), "latency_ms_p99": ms(tally.latency.valueAtPercentile(99)),
            "latency_ms_p999": ms(tally.latency.valueAtPercentile(99.9)), "latency_ms_max": ms(tally.latency.maxRecorded),
            "server_cpu_user_s": utime, "server_cpu_system_s": stime,
            "server_user_us_per_delivery": perDelivery(utime), "server_total_us_per_delivery": perDelivery(utime + stime),
            "generator_cpu_s": generatorSeconds, "generator_total_us_per_delivery": perDelivery(generatorSeconds),
            "deflate": common.deflate, "quote": quote,
            "wire_bytes_per_delivery": delivered > 0 ? Double(tally.wireBytes / max(1, tally.received)) : 0,
            "compressed_frames": tally.compressedFrames,
        ]
        if !statsTimes.isEmpty {
            result["stats_requests"] = statsTimes.count
            result["stats_ms_p50"] = ms(statsTimes[statsTimes.count / 2])
            result["stats_ms_p90"] = ms(statsTimes[statsTimes.count * 9 / 10])
            result["stats_ms_max"] = ms(statsTimes[statsTimes.count - 1])
        }
        print(String(decoding: try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys]), as: UTF8.self))
        for channel in publishChannels { try? await channel.close() }
        await audience.close()
    }

    private func ms(_ nanoseconds: UInt64) -> Double { (Double(nanoseconds) / 1e4).rounded() / 100 }
}

/// CPU time and memory of a process, from /proc.
enum ProcessStats {
    static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

    /// utime and stime summed over several processes.
    static func cpuTicks(pids: [Int32]) -> (user: Int, system: Int) {
        pids.map(cpuTicks(pid:)).reduce((0, 0)) { ($0.0 + $1.user, $0.1 + $1.system) }
    }

    /// utime and stime in clock ticks (/proc/PID/stat fields 14 and 15).
    static func cpuTicks(pid: Int32) -> (user: Int, system: Int) {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return (0, 0) }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After the command name: field 3 is at index 0, so utime (14) is at 11 and stime (15) at 12.
        guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { return (0, 0) }
        return (user, system)
    }

    static func residentKiB(pid: Int32) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
        else { return 0 }
        return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
