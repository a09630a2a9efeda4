import NIOCore
import SwitchboardCore

/// What a ``SessionDriver`` needs of the connection that carries its session.
protocol SessionTransport: ClientConnection {
    var node: Node { get }
    var eventLoop: any EventLoop { get }
    /// The connection's slot in the pools.
    var reservation: SlotReservation { get }
    /// The `transport` label the connection counts under.
    var metricsTransport: NodeStatistics.Transport { get }
    /// `reply` in the connection's codec.
    func encode(_ reply: SessionReply, id: RequestID?) -> Delivery
    /// Queues `delivery` on the connection's one bounded outbound path.
    func send(_ delivery: Delivery)
    /// Ends the transport for `code`: a close frame on `/ws`; a Socket.IO DISCONNECT or the end of the
    /// transport on `/socket.io/` (SPEC §9). Must not feed the session any event.
    func endTransport(code: CloseCode, reason: String)
    /// The session gave everything back: no more channel messages to this connection.
    func sessionEnded()
}

/// Carries out what a connection's ``ClientSession`` decides, and feeds it what happened: the only place where
/// the session protocol touches the node (hub, pools, registry, counters, audit, token checks, the broker).
///
/// Events are handled one at a time, in order: an event that arrives while the actions of another are being
/// carried out (a completion known at once, a close fired from inside a write) waits for them. Asynchronous
/// work comes back to the connection's event loop as an event; once the session is closed it yields nothing.
///
/// The node, the slot and the event loop come from the connection (not stored twice: memory per idle connection).
///
/// `@unchecked Sendable`: every member is used on the connection's event loop only; asynchronous work hops back
/// to it before touching anything.
final class SessionDriver<Connection: SessionTransport>: @unchecked Sendable {
    private var session: ClientSession
    /// The connection, from ``open(_:)`` until the session is released (which breaks the cycle between the two).
    private var connection: Connection?
    private var timer: Scheduled<Void>?
    private var events: [ClientSession.Event] = []
    private var isRunning = false

    init(identity: Identity, rules: ClientSession.Rules) {
        self.session = ClientSession(identity: identity, rules: rules)
    }

    /// Who the client is now.
    var identity: Identity { session.identity }
    /// The channels the client holds, in subscription order.
    var subscriptions: [String] { session.subscriptions }
    /// Whether the session ended.
    var isClosed: Bool { session.isClosed }

    /// The session opens on `connection`: registered, counted, and its timer armed. On the loop.
    func open(_ connection: Connection) {
        self.connection = connection
        let node = connection.node
        node.connections.add(connection, userId: identity.userId)
        node.statistics.recordConnected(role: identity.role, transport: connection.metricsTransport)
        perform(session.start())
    }

    /// Handles `event` after any being handled. On the loop.
    func handle(_ event: ClientSession.Event) {
        guard let connection else { return }
        connection.eventLoop.assertInEventLoop()
        events.append(event)
        guard !isRunning else { return }
        isRunning = true
        defer { isRunning = false }
        while !events.isEmpty {
            perform(session.handle(events.removeFirst()))
        }
    }

    private func perform(_ actions: [ClientSession.Action]) {
        for action in actions {
            guard let connection else { return }
            perform(action, on: connection)
        }
    }

    private func perform(_ action: ClientSession.Action, on connection: Connection) {
        let node = connection.node
        switch action {
        case .reply(let reply, let id):
            connection.send(connection.encode(reply, id: id))
        case .verifyToken(let token):
            verify(token, for: connection)
        case .claimIdentity(let identity):
            do {
                try connection.reservation.reassign(to: identity.userId ?? "")
                events.append(.identityClaimed(true))
            } catch {
                events.append(.identityClaimed(false))
            }
        case .adopt(let old, let new):
            node.statistics.recordAuth(succeeded: true)
            node.connections.changeUser(connection, from: old.userId, to: new.userId)
            node.statistics.recordRoleChange(from: old.role, to: new.role, transport: connection.metricsTransport)
        case .prepare(let subscriptions):
            prepare(subscriptions, for: connection)
        case .subscribe(let subscription, let isNew):
            if isNew { node.statistics.recordSubscribed(namespace: subscription.namespace.name) }
            node.hub.subscribe(connection, to: subscription.channel, namespace: subscription.namespace, since: subscription.since) {
                recovered in connection.encode(.subscribed(channel: subscription.name, recovered: recovered), id: subscription.id)
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
                node.audit.record(
                    SecurityEvent(.rateLimited, ip: connection.ip, userId: identity.userId, connectionId: connection.id, detail: "message rate"))
            }
        case .rateAbused:
            node.statistics.recordRateLimited(.messageAbuse)
            node.audit.record(
                SecurityEvent(
                    .rateLimited, ip: connection.ip, userId: identity.userId, connectionId: connection.id,
                    detail: "message rate abuse: closed with 4008"))
        case .authenticationFailed(let detail):
            node.authenticationFailed(ip: connection.ip, connectionId: connection.id, detail: detail)
        case .poolExhausted(let userId):
            node.audit.record(
                SecurityEvent(.connectionLimit, ip: connection.ip, userId: userId, connectionId: connection.id, detail: "per-user pool full after auth"))
        case .close(let code, let reason):
            connection.endTransport(code: code, reason: reason)
        case .release(let subscriptions):
            release(connection, subscriptions: subscriptions)
        }
    }

    // MARK: Asynchronous work

    private func verify(_ token: String, for connection: Connection) {
        let tokens = connection.node.tokens
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
        verification.whenSuccess { self.handle($0) }
    }

    /// SPEC §8: history, last value and `since` answer the same on every node, so a node that has not seen a
    /// channel whole reads it from Redis first.
    private func prepare(_ subscriptions: [ClientSession.Subscription], for connection: Connection) {
        let node = connection.node
        let unprepared = subscriptions.filter { node.cluster?.needsPreparation(channel: $0.name, namespace: $0.namespace) == true }
        guard let cluster = node.cluster, !unprepared.isEmpty else {
            events.append(.prepared)
            return
        }
        let channels = unprepared.map { ($0.name, $0.namespace) }
        connection.eventLoop.makeFutureWithTask {
            await withTaskGroup(of: Void.self) { group in
                for (name, namespace) in channels { group.addTask { await cluster.prepare(channel: name, namespace: namespace) } }
            }
        }.whenSuccess { self.handle(.prepared) }
    }

    private func publish(_ publication: Publication, id: RequestID?, for connection: Connection) {
        let node = connection.node
        let channel = publication.channel
        let target: BrokerTarget
        let resolved: Publication
        do {
            (resolved, target) = try node.resolve(publication, to: .channel(channel))
        } catch {
            events.append(.answered(.error(error.code, error.message), id: id))
            return
        }
        // An in-process broker answers at once; one that needs a round trip answers later, and the requests
        // after this one wait for it.
        if let result = node.broker.publishImmediately(resolved, to: target) {
            events.append(.answered(.published(channel: channel, seq: result.seq), id: id))
            return
        }
        let broker = node.broker
        connection.eventLoop.makeFutureWithTask { () async -> ClientSession.Event in
            do throws(BrokerError) {
                let result = try await broker.publish(resolved, to: target)
                return .answered(.published(channel: channel, seq: result.seq), id: id)
            } catch {
                let failure = Node.PublishError.broker(error)
                return .answered(.error(failure.code, failure.message), id: id)
            }
        }.whenSuccess { self.handle($0) }
    }

    private func setTimer(_ kind: ClientSession.Timer, on connection: Connection) {
        timer?.cancel()
        switch kind {
        case .authTimeout:
            let delay = TimeAmount.milliseconds(Int64(session.configuration.authTimeoutMs))
            timer = connection.eventLoop.scheduleTask(in: delay) { self.handle(.timerFired(kind)) }
        case .expiry(let expiresAt):
            // Seconds from a token: clamped before any conversion, so no claim can trap (SPEC §2, §13). An expiry
            // further away than the longest timer is looked at again then.
            let remaining = expiresAt - Double(Hub.wallClockMilliseconds()) / 1000
            guard remaining.isFinite, remaining <= ClientSession.longestTimer else {
                let delay = TimeAmount.seconds(Int64(ClientSession.longestTimer))
                timer = connection.eventLoop.scheduleTask(in: delay) {
                    if let connection = self.connection { self.setTimer(kind, on: connection) }
                }
                return
            }
            let delay = TimeAmount.milliseconds(Int64(max(remaining, 0) * 1000))
            timer = connection.eventLoop.scheduleTask(in: delay) { self.handle(.timerFired(kind)) }
        }
    }

    // MARK: Ending

    private func unsubscribe(_ connection: Connection, from name: String) {
        let node = connection.node
        node.hub.unsubscribe(connection, from: name)
        if let channel = ChannelName(name) { node.statistics.recordUnsubscribed(namespace: String(channel.namespace)) }
    }

    private func release(_ connection: Connection, subscriptions: [String]) {
        timer?.cancel()
        timer = nil
        for name in subscriptions { unsubscribe(connection, from: name) }
        connection.node.connections.remove(connection, userId: identity.userId)
        connection.node.statistics.recordDisconnected(role: identity.role, transport: connection.metricsTransport)
        connection.reservation.release()
        connection.sessionEnded()
        self.connection = nil
    }
}

extension Node.PublishError {
    /// The wire error code for this refusal.
    var code: ErrorCode {
        switch self {
        case .target(let error): error.code
        case .broker: .internalError
        }
    }

    var message: String {
        switch self {
        case .target(let error): error.message
        case .broker(let error): "publish failed: \(error.description)"
        }
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
