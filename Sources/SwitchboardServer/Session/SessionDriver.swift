import NIOCore
import SwitchboardCore

/// What a ``SessionDriver`` needs of the connection that carries its session.
protocol SessionTransport: ClientConnection {
    var node: Node { get }
    var eventLoop: any EventLoop { get }
    /// The connection's slot in the pools.
    var reservation: SlotReservation { get }
    /// The session, stored in the connection (no object of its own: memory per idle connection).
    var session: SessionDriver<Self> { get set }
    /// The `transport` label the connection counts under.
    var metricsTransport: NodeStatistics.Transport { get }
    /// `reply` in the connection's codec.
    func encode(_ reply: SessionReply, id: RequestID?) -> Delivery
    /// Queues `delivery` on the connection's one bounded outbound path.
    func send(_ delivery: Delivery)
    /// Ends the transport for `code`: a close frame on `/ws`; a Socket.IO DISCONNECT or the end of the
    /// transport on `/socket.io/` (SPEC §9).
    func endTransport(code: CloseCode, reason: String)
    /// The session gave everything back: no more channel messages to this connection.
    func sessionEnded()
}

extension SessionTransport {
    /// Handles a session event: the machine decides, the driver carries it out. On the connection's loop.
    func handleSession(_ event: ClientSession.Event) {
        SessionDriver.handle(event, on: self)
    }
}

/// A connection's session: the pure ``ClientSession`` and its timer, and the code that carries out what the
/// machine decides and feeds it what happened. It is the only place where the session protocol touches the
/// node (hub, pools, registry, counters, audit, token checks, the broker).
///
/// Asynchronous work comes back to the connection's event loop as an event. An event may arrive while the
/// actions of another are being carried out (a completion known at once, a close fired from inside a write):
/// it is handled at once, which is safe because the machine's state is settled before it returns its actions,
/// and an action that leaves a request pending is always the last of its batch.
struct SessionDriver<Connection: SessionTransport> {
    private(set) var machine: ClientSession
    private var timer: Scheduled<Void>?

    init(identity: Identity, rules: ClientSession.Rules) {
        self.machine = ClientSession(identity: identity, rules: rules)
    }

    /// Who the client is now.
    var identity: Identity { machine.identity }
    /// The channels the client holds, in subscription order.
    var subscriptions: [String] { machine.subscriptions }

    /// The session opens on `connection`: registered, counted, and its timer armed. On the loop.
    static func open(_ connection: Connection) {
        let node = connection.node
        node.connections.add(connection, userId: connection.session.identity.userId)
        node.statistics.recordConnected(role: connection.session.identity.role, transport: connection.metricsTransport)
        perform(connection.session.machine.start(), on: connection)
    }

    /// Handles `event` for `connection`. On the loop.
    static func handle(_ event: ClientSession.Event, on connection: Connection) {
        connection.eventLoop.assertInEventLoop()
        perform(connection.session.machine.handle(event), on: connection)
    }

    private static func perform(_ actions: [ClientSession.Action], on connection: Connection) {
        for action in actions { perform(action, on: connection) }
    }

    private static func perform(_ action: ClientSession.Action, on connection: Connection) {
        let node = connection.node
        switch action {
        case .reply(let reply, let id):
            connection.send(connection.encode(reply, id: id))
        case .verifyToken(let token):
            verify(token, for: connection)
        case .claimIdentity(let identity):
            // The machine asks this for a user's identity only: an anonymous one has no pool of its own.
            let claimed = identity.userId.map { (try? connection.reservation.reassign(to: $0)) != nil } ?? true
            handle(.identityClaimed(claimed), on: connection)
        case .adopt(let old, let new):
            node.statistics.recordAuth(succeeded: true)
            node.connections.changeUser(connection, from: old.userId, to: new.userId)
            node.statistics.recordRoleChange(from: old.role, to: new.role, transport: connection.metricsTransport)
        case .prepare(let subscriptions):
            prepare(subscriptions, for: connection)
        case .askConnectProxy(let data):
            askConnectProxy(data, for: connection)
        case .askSubscribeProxy(let subscription):
            askSubscribeProxy(subscription, for: connection)
        case .subscribe(let subscription, let isNew):
            if isNew { node.statistics.recordSubscribed(namespace: subscription.namespace.name) }
            node.hub.subscribe(
                connection, to: subscription.channel, namespace: subscription.namespace, since: subscription.since,
                epoch: subscription.epoch
            ) { recovered, epoch in
                connection.encode(.subscribed(channel: subscription.name, epoch: epoch, recovered: recovered), id: subscription.id)
            }
        case .unsubscribe(let name):
            unsubscribe(connection, from: name)
        case .publish(let publication, let id):
            publish(publication, id: id, for: connection)
        case .setTimer(let kind):
            setTimer(kind, on: connection)
        case .rateLimited(let report):
            node.statistics.recordRateLimited(.messageRate)
            if report {
                node.gatekeeper.audit.record(
                    SecurityEvent(
                        .rateLimited, ip: connection.ip, userId: connection.session.identity.userId, connectionId: connection.id,
                        detail: "message rate"))
            }
        case .rateAbused:
            node.statistics.recordRateLimited(.messageAbuse)
            node.gatekeeper.audit.record(
                SecurityEvent(
                    .rateLimited, ip: connection.ip, userId: connection.session.identity.userId, connectionId: connection.id,
                    detail: "message rate abuse: closed with 4008"))
        case .authenticationFailed(let detail):
            node.gatekeeper.authenticationFailed(ip: connection.ip, connectionId: connection.id, detail: detail)
        case .poolExhausted(let userId):
            node.gatekeeper.audit.record(
                SecurityEvent(.connectionLimit, ip: connection.ip, userId: userId, connectionId: connection.id, detail: "per-user pool full after auth"))
        case .close(let code, let reason):
            connection.endTransport(code: code, reason: reason)
        case .release(let subscriptions):
            release(connection, subscriptions: subscriptions)
        }
    }

    // MARK: Asynchronous work

    private static func verify(_ token: String, for connection: Connection) {
        let tokens = connection.node.auth.tokens
        let reservation = connection.reservation
        let userLimit = connection.node.settings.maxConnectionsPerUser
        // JWTKit verifies asynchronously; in cluster mode the user's cluster-wide slot is taken in the same task
        // (SPEC §8). A lease taken for a session that ended meanwhile is given back by the reservation.
        let verification = connection.eventLoop.makeFutureWithTask { () -> ClientSession.Event in
            do throws(TokenVerifier.Failure) {
                let identity = try await tokens.verify(token)
                guard let userId = identity.userId else { return .tokenVerified(.success(identity), leased: true) }
                let leased = await reservation.leaseClusterSlot(of: userId, limit: userLimit)
                return .tokenVerified(.success(identity), leased: leased)
            } catch {
                return .tokenVerified(.failure(.init(description: error.description)), leased: true)
            }
        }
        verification.whenSuccess { handle($0, on: connection) }
    }

    /// SPEC §8: history, last value and `since` answer the same on every node, so a node that has not seen a
    /// channel whole reads it from Redis first.
    private static func prepare(_ subscriptions: [ClientSession.Subscription], for connection: Connection) {
        let node = connection.node
        let unprepared = subscriptions.filter { node.cluster?.needsPreparation(channel: $0.name, namespace: $0.namespace) == true }
        guard let cluster = node.cluster, !unprepared.isEmpty else {
            handle(.prepared, on: connection)
            return
        }
        let channels = unprepared.map { ($0.name, $0.namespace) }
        connection.eventLoop.makeFutureWithTask {
            await withTaskGroup(of: Void.self) { group in
                for (name, namespace) in channels { group.addTask { await cluster.prepare(channel: name, namespace: namespace, forSubscriber: true) } }
            }
        }.whenSuccess { handle(.prepared, on: connection) }
    }

    /// SPEC §14: an in-band `auth` with the platform's own credentials, answered as a token check is (in cluster
    /// mode with the user's cluster-wide slot taken in the same task).
    private static func askConnectProxy(_ data: JSONValue, for connection: Connection) {
        guard let backend = connection.node.auth.backend else {
            handle(.tokenVerified(.failure(.init(description: "no connect proxy is configured", counted: false)), leased: true), on: connection)
            return
        }
        let (reservation, ip, transport) = (connection.reservation, connection.ip, connection.metricsTransport.rawValue)
        let userLimit = connection.node.settings.maxConnectionsPerUser
        connection.eventLoop.makeFutureWithTask { () -> ClientSession.Event in
            switch await backend.connect(transport: transport, ip: ip, headers: [:], data: data) {
            case .identity(let identity):
                guard let userId = identity.userId else { return .tokenVerified(.success(identity), leased: true) }
                return .tokenVerified(.success(identity), leased: await reservation.leaseClusterSlot(of: userId, limit: userLimit))
            case .refused(let reason):
                return .tokenVerified(.failure(.init(description: reason)), leased: true)
            case .unavailable(let reason):
                return .tokenVerified(.failure(.init(description: reason, counted: false)), leased: true)
            }
        }.whenSuccess { handle($0, on: connection) }
    }

    /// SPEC §14: the platform's backend decides a subscribe the rules do not allow. The answer comes back on the
    /// connection's loop; a session that ended meanwhile ignores it.
    private static func askSubscribeProxy(_ subscription: ClientSession.Subscription, for connection: Connection) {
        guard let backend = connection.node.auth.backend else {
            handle(.subscribeProxyAnswered(.unavailable("no subscribe proxy is configured")), on: connection)
            return
        }
        let (identity, ip, id) = (connection.session.identity, connection.ip, connection.id)
        connection.eventLoop.makeFutureWithTask {
            await backend.authorizeSubscribe(identity: identity, channel: subscription.name, ip: ip, connectionId: id)
        }.whenSuccess { handle(.subscribeProxyAnswered($0), on: connection) }
    }

    private static func publish(_ publication: Publication, id: RequestID?, for connection: Connection) {
        let node = connection.node
        let channel = publication.channel
        let resolved: Publisher.Resolved
        do {
            resolved = try node.publisher.resolve(publication, to: .channel(channel))
        } catch {
            handle(.answered(.error(error.code, error.message), id: id), on: connection)
            return
        }
        // An in-process broker answers at once; one that needs a round trip answers later, and the requests
        // after this one wait for it.
        let publisher = node.publisher
        if let result = publisher.publishImmediately(resolved) {
            handle(.answered(.published(channel: channel, seq: result.seq), id: id), on: connection)
            return
        }
        connection.eventLoop.makeFutureWithTask { () async -> ClientSession.Event in
            do throws(Publisher.PublishError) {
                let result = try await publisher.publish(resolved)
                return .answered(.published(channel: channel, seq: result.seq), id: id)
            } catch {
                return .answered(.error(error.code, error.message), id: id)
            }
        }.whenSuccess { handle($0, on: connection) }
    }

    private static func setTimer(_ kind: ClientSession.Timer, on connection: Connection) {
        connection.session.timer?.cancel()
        switch kind {
        case .authTimeout:
            let delay = TimeAmount(connection.session.machine.configuration.authTimeout)
            connection.session.timer = connection.eventLoop.scheduleTask(in: delay) { handle(.timerFired(kind), on: connection) }
        case .expiry(let expiresAt):
            // Seconds from a token: clamped before any conversion, so no claim can trap (SPEC §2, §13). An expiry
            // further away than the longest timer is looked at again then.
            let remaining = expiresAt - Double(Hub.wallClockMilliseconds()) / 1000
            guard remaining.isFinite, remaining <= ClientSession.longestTimer else {
                let delay = TimeAmount.seconds(Int64(ClientSession.longestTimer))
                connection.session.timer = connection.eventLoop.scheduleTask(in: delay) {
                    if !connection.session.machine.isClosed { setTimer(kind, on: connection) }
                }
                return
            }
            let delay = TimeAmount.milliseconds(Int64(max(remaining, 0) * 1000))
            connection.session.timer = connection.eventLoop.scheduleTask(in: delay) { handle(.timerFired(kind), on: connection) }
        }
    }

    // MARK: Ending

    private static func unsubscribe(_ connection: Connection, from name: String) {
        let node = connection.node
        node.hub.unsubscribe(connection, from: name)
        if let channel = ChannelName(name) { node.statistics.recordUnsubscribed(namespace: String(channel.namespace)) }
    }

    private static func release(_ connection: Connection, subscriptions: [String]) {
        connection.session.timer?.cancel()
        connection.session.timer = nil
        for name in subscriptions { unsubscribe(connection, from: name) }
        let identity = connection.session.identity
        connection.node.connections.remove(connection, userId: identity.userId)
        connection.node.statistics.recordDisconnected(role: identity.role, transport: connection.metricsTransport)
        connection.reservation.release()
        connection.sessionEnded()
    }
}

extension ChannelAccessError {
    /// The wire error code for this refusal (SPEC §3, §11).
    var code: ErrorCode {
        switch reason {
        case .badName: .badRequest
        case .unknownNamespace: .unknownChannel
        case .forbidden: .forbidden
        }
    }
}
