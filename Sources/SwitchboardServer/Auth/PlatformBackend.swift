import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
public import ServiceLifecycle
import SwitchboardCore
import Synchronization

/// The platform's own backend as SPEC §14 asks it: the connect proxy (who is this client without a token?) and the
/// subscribe proxy (may this user have this channel?), over one pooled HTTP client (async-http-client).
///
/// Every call has `proxy-timeout-ms` to answer, is never retried (a backend that is down or slow refuses with
/// `UNAVAILABLE` at once, rather than holding clients), and reads at most 64 KiB of answer. The node runs it as a
/// service: the client's pool is made by the first call and shut down after the server stops (a node dropped before
/// it served, or never asked, holds no client to shut down).
public final class PlatformBackend: Service, Sendable {
    public struct Configuration: Sendable {
        /// `connect-proxy-url`: upgrades and Socket.IO CONNECTs without a token are sent here.
        public var connectURL: String?
        /// `subscribe-proxy-url`: subscribes to `subscribe-proxy: true` namespaces the rules do not allow go here.
        public var subscribeURL: String?
        /// `proxy-timeout-ms`.
        public var timeout: Duration

        public init(connectURL: String?, subscribeURL: String?, timeout: Duration) {
            self.connectURL = connectURL
            self.subscribeURL = subscribeURL
            self.timeout = timeout
        }
    }

    /// The connect proxy's answer.
    enum ConnectAnswer: Sendable, Equatable {
        /// 200 with an identity, or `{"anonymous":true}`.
        case identity(Identity)
        /// Any other status, or an answer that is not one: `UNAUTHORIZED`, counted toward the IP's block.
        case refused(String)
        /// Timed out or unreachable: 503 `UNAVAILABLE`, not counted.
        case unavailable(String)
    }

    /// The subscribe proxy's answer.
    enum SubscribeAnswer: Sendable, Equatable {
        case allowed
        case forbidden(String)
        case unavailable(String)
    }

    /// The request headers the connect proxy receives (SPEC §14).
    static let forwardedHeaders = ["Cookie", "Authorization", "Origin", "User-Agent"]
    /// Most connections kept open to the backend (HTTP/1.1: one call at a time on each).
    static let maxBackendConnections = 64
    /// Largest answer read.
    static let maxAnswerBytes = 65_536

    let configuration: Configuration
    private let eventLoopGroup: any EventLoopGroup
    /// The pool: none before the first call, and none again once shut down.
    private let pool = Mutex(Pool.none)

    private enum Pool {
        case none
        case open(HTTPClient)
        case shutDown
    }

    public init(configuration: Configuration, eventLoopGroup: any EventLoopGroup) {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
    }

    public func run() async throws {
        // Until the server stops: then the pool's connections close.
        try? await gracefulShutdown()
        let open = pool.withLock { pool -> HTTPClient? in
            defer { pool = .shutDown }
            if case .open(let client) = pool { return client }
            return nil
        }
        try await open?.shutdown()
    }

    /// The pool, made by the first caller; nil once the node stopped.
    private var client: HTTPClient? {
        pool.withLock { pool in
            switch pool {
            case .open(let client): return client
            case .shutDown: return nil
            case .none:
                let timeout = TimeAmount(configuration.timeout)
                var clientConfiguration = HTTPClient.Configuration(
                    redirectConfiguration: .disallow, timeout: .init(connect: timeout, read: timeout))
                clientConfiguration.decompression = .disabled
                // A reconnect storm asks about hundreds of clients at once: async-http-client's default of 8
                // connections to the backend held the rest in a queue until their deadline passed.
                clientConfiguration.connectionPool = .init(
                    idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: Self.maxBackendConnections)
                let client = HTTPClient(eventLoopGroup: eventLoopGroup, configuration: clientConfiguration)
                pool = .open(client)
                return client
            }
        }
    }

    /// Asks the connect proxy who a client without a token is: `transport` (`websocket` or `socketio`), its IP, the
    /// forwarded headers it sent and the `data` it gave (Socket.IO's CONNECT `auth` object).
    func connect(transport: String, ip: String, headers: [String: String], data: JSONValue?) async -> ConnectAnswer {
        guard let url = configuration.connectURL else { return .refused("no connect proxy") }
        let body: JSONValue = .object([
            "transport": .string(transport), "ip": .string(ip),
            "headers": .object(headers.mapValues(JSONValue.string)), "data": data ?? .null,
        ])
        switch await post(body, to: url) {
        case .unavailable(let reason):
            return .unavailable(reason)
        case .answered(let status, let answer):
            guard status == .ok else { return .refused("the platform refused the session (\(status.code))") }
            return Self.identity(from: answer)
        }
    }

    /// Asks the subscribe proxy whether `identity` may have `channel`.
    func authorizeSubscribe(identity: Identity, channel: String, ip: String, connectionId: String) async -> SubscribeAnswer {
        guard let url = configuration.subscribeURL else { return .forbidden("no subscribe proxy") }
        let body: JSONValue = .object([
            "userId": identity.userId.map(JSONValue.string) ?? .null, "role": .string(identity.role.rawValue),
            "tier": identity.tier.map(JSONValue.string) ?? .null, "channel": .string(channel), "ip": .string(ip),
            "connectionId": .string(connectionId),
        ])
        switch await post(body, to: url) {
        case .unavailable(let reason):
            return .unavailable(reason)
        case .answered(let status, let answer):
            guard status == .ok, case .bool(true)? = answer?["allow"] else {
                return .forbidden("the platform does not allow \(channel) to you")
            }
            return .allowed
        }
    }

    /// The identity of a connect proxy's 200 answer: `{"userId","role","tier","expiresAt"?,"channels"?}` or
    /// `{"anonymous":true}`.
    static func identity(from answer: JSONValue?) -> ConnectAnswer {
        guard let answer, answer.isObject else { return .refused("the platform's answer is not a JSON object") }
        if case .bool(true)? = answer["anonymous"] { return .identity(.anonymous) }
        guard case .string(let userId)? = answer["userId"], !userId.isEmpty, userId.utf8.count <= 256 else {
            return .refused("the platform's answer has no userId")
        }
        var role = Role.user
        switch answer["role"] {
        case nil, .null?: break
        case .string(let name)?:
            guard let named = Role(rawValue: name) else { return .refused("the platform's answer has an unknown role '\(name.prefix(40))'") }
            role = named == .anonymous ? .user : named
        default: return .refused("the platform's answer has a role that is not a string")
        }
        let tier: String? = if case .string(let tier)? = answer["tier"] { tier } else { nil }
        var expiresAt: Double?
        switch answer["expiresAt"] {
        case nil, .null?: break
        case .int(let seconds)? where seconds > 0: expiresAt = Double(seconds)
        case .double(let seconds)? where seconds.isFinite && seconds > 0: expiresAt = seconds
        default: return .refused("the platform's expiresAt is not a time in seconds since 1970")
        }
        if let expiresAt, expiresAt <= Date().timeIntervalSince1970 { return .refused("the platform's session has expired") }
        var grants: [String] = []
        switch answer["channels"] {
        case nil, .null?: break
        case .array(let items)?:
            for item in items {
                guard case .string(let channel) = item else { return .refused("the platform's channels are not strings") }
                grants.append(channel)
            }
            if let refusal = Identity.refusal(ofGrants: grants) { return .refused("the platform's channels: \(refusal)") }
        default: return .refused("the platform's channels are not an array")
        }
        return .identity(Identity(userId: userId, role: role, tier: tier, expiresAt: expiresAt, grants: grants))
    }

    /// What one call to the backend came to.
    private enum Exchange {
        /// Its status and JSON answer (nil when the body is not JSON).
        case answered(HTTPResponseStatus, JSONValue?)
        /// No answer within the timeout, or no backend.
        case unavailable(String)
    }

    /// POSTs `body` as JSON.
    private func post(_ body: JSONValue, to url: String) async -> Exchange {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: body.jsonText))
        let deadline = NIODeadline.now() + TimeAmount(configuration.timeout)
        do {
            guard let client else { return .unavailable("the node is stopping") }
            let response = try await client.execute(request, deadline: deadline)
            // The answer's body within the same deadline: a backend that sends its head and then stalls is as slow.
            let bytes = try await withThrowingTaskGroup(of: ByteBuffer?.self) { group in
                group.addTask { try await response.body.collect(upTo: Self.maxAnswerBytes) }
                group.addTask {
                    // A signed difference: the head may come after the deadline (unsigned uptimes would trap).
                    let remaining = deadline - NIODeadline.now()
                    try await Task.sleep(for: .nanoseconds(max(0, remaining.nanoseconds)))
                    return nil
                }
                defer { group.cancelAll() }
                return try await group.next() ?? nil
            }
            guard let bytes else { return .unavailable("the platform's backend did not answer within \(configuration.timeout)") }
            return .answered(response.status, try? JSONValue.parse(bytes.readableBytesView))
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            return .unavailable("the platform's backend did not answer within \(configuration.timeout)")
        } catch {
            return .unavailable("the platform's backend is unreachable")
        }
    }
}
