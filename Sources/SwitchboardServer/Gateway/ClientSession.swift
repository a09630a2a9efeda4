import NIOCore
import SwitchboardCore

/// What one connection knows about its client: who it is and what it subscribed to.
struct SessionState {
    var identity: Identity
    /// Channel names in subscription order. An array rather than a set: a connection holds few (at most
    /// `max-subscriptions`), and a small array is half a set's allocation on every idle connection.
    var subscriptions: [String] = []
    var rateLimiter: MessageRateLimiter
    /// An in-band `auth` is being verified, or a `publish` waits for the broker: later messages wait in
    /// `deferred`, so replies keep the order of their requests.
    var isWaiting = false
    var deferred: [Result<ClientRequest, ClientRequestError>] = []
    /// The one timer that can end the session: the auth timeout before authentication, the token's expiry
    /// after (never both, so one field: it is per connection).
    var deadline: Scheduled<Void>?
    /// The first `RATE_LIMITED` of a connection is a security event; the rest are counted only.
    var reportedRateLimit = false

    init(identity: Identity, settings: Settings) {
        self.identity = identity
        self.rateLimiter = MessageRateLimiter(perMinute: settings.messageRate, burst: settings.messageBurst)
    }
}

/// A connection that runs the session protocol of SPEC §3 (`auth`, `subscribe`, `unsubscribe`, `publish`,
/// `ping`, limits and token expiry), whatever its wire protocol: the native WebSocket connection and the
/// Socket.IO client share this logic and differ only in how replies are encoded and how a session ends.
///
/// Every member is used on ``eventLoop`` only.
protocol SessionHost: ClientConnection {
    var node: Node { get }
    var eventLoop: any EventLoop { get }
    var reservation: SlotReservation { get }
    var session: SessionState { get set }
    /// The connection ended: late results of asynchronous work are dropped.
    var tornDown: Bool { get }
    /// The `transport` label the connection counts under.
    var metricsTransport: NodeStatistics.Transport { get }
    /// `reply` in the host's codec, for the hub to queue ahead of a subscription's replay.
    func encode(_ reply: SessionReply, id: RequestID?) -> Delivery
    /// Queues a delivery for the client.
    func send(_ delivery: Delivery)
    /// Ends the session for `code` (SPEC §3's close codes; a Socket.IO client gets what its protocol says).
    func terminate(code: CloseCode, reason: String)
}

extension SessionHost {
    /// Applies SPEC §5 to what a push into the connection's outbox did: `drain` schedules the drain it asks
    /// for; replaced and dropped messages are counted; an overflow ends the connection as a slow consumer.
    func apply(_ result: Outbox.PushResult, drain: () -> Void) {
        switch result {
        case .queued, .closed:
            break
        case .needsDrain:
            drain()
        case .replaced(let namespace):
            node.statistics.recordDropped(namespace: namespace, reason: .slowConsumerConflated)
        case .overflow(let discarded):
            for (namespace, count) in discarded {
                node.statistics.recordDropped(namespace: namespace, reason: .slowConsumer, count: count)
            }
            eventLoop.execute {
                self.node.statistics.recordSlowConsumerClose()
                self.terminate(code: .slowConsumer, reason: "slow consumer: outbound buffer full")
            }
        }
    }

    /// Queues `reply` in the host's codec.
    func reply(_ reply: SessionReply, id: RequestID?) {
        send(encode(reply, id: id))
    }

    /// Most messages held back while an `auth` or `publish` is pending; more is abuse.
    var maxDeferredMessages: Int { 64 }

    func startSession() {
        if !node.settings.allowAnonymous && !session.identity.isAuthenticated {
            let timeout = TimeAmount.milliseconds(Int64(node.settings.authTimeoutMs))
            session.deadline = eventLoop.scheduleTask(in: timeout) { [self] in
                if !self.session.identity.isAuthenticated {
                    self.terminate(code: .authTimeout, reason: "not authenticated in time")
                }
            }
        } else {
            scheduleExpiry()
        }
    }

    /// Drops the session's timer and subscriptions (the connection ended).
    func releaseSession() {
        session.deadline?.cancel()
        for channel in session.subscriptions {
            removeSubscription(channel)
        }
    }

    /// Applies the message rate limit (SPEC §3) to one inbound message: false when it is refused (answered with
    /// `RATE_LIMITED`, carrying `id()` when the message can be read) or the session ended for abuse.
    func admitMessage(id: () -> RequestID?) -> Bool {
        switch session.rateLimiter.check() {
        case .allow:
            return true
        case .limit:
            node.statistics.recordRateLimited(.messageRate)
            if !session.reportedRateLimit {
                session.reportedRateLimit = true
                node.audit.record(
                    SecurityEvent(
                        .rateLimited, ip: ip, userId: session.identity.userId, connectionId: self.id, detail: "message rate"))
            }
            reply(.error(.rateLimited, "too many messages: at most \(node.settings.messageRate) per minute"), id: id())
            return false
        case .abuse:
            node.statistics.recordRateLimited(.messageAbuse)
            node.audit.record(
                SecurityEvent(
                    .rateLimited, ip: ip, userId: session.identity.userId, connectionId: self.id,
                    detail: "message rate abuse: closed with 4008"))
            terminate(code: .rateLimitAbuse, reason: "message rate limit abused")
            return false
        }
    }

    /// Handles one decoded request (or the refusal of one that could not be decoded), after the requests
    /// before it: while one is pending, later ones wait in order.
    func handle(_ decoded: Result<ClientRequest, ClientRequestError>) {
        if session.isWaiting {
            guard session.deferred.count < maxDeferredMessages else {
                terminate(code: .rateLimitAbuse, reason: "too many messages while a request is pending")
                return
            }
            session.deferred.append(decoded)
            return
        }
        let request: ClientRequest
        switch decoded {
        case .success(let decoded): request = decoded
        case .failure(let error):
            reply(.error(.badRequest, error.message), id: error.id)
            return
        }
        switch request.command {
        case .auth(let token): authenticate(token: token, id: request.id)
        case .subscribe(let channel, let since): subscribe(to: channel, since: since, id: request.id)
        case .unsubscribe(let channel): unsubscribe(from: channel, id: request.id)
        case .publish(let channel, let event, let data, let key):
            publish(Publication(channel: channel, event: event, data: data, key: key), id: request.id)
        case .ping: reply(.pong, id: request.id)
        }
    }

    // MARK: auth

    private func authenticate(token: String, id: RequestID?) {
        session.isWaiting = true
        let tokens = node.tokens
        let reservation = self.reservation
        let userLimit = node.settings.maxConnectionsPerUser
        // JWTKit verifies asynchronously; the result comes back to the event loop before any later message. In
        // cluster mode the user's cluster-wide slot is taken in the same task (SPEC §8).
        let verification = eventLoop.makeFutureWithTask { () -> (Result<Identity, TokenVerifier.Failure>, leased: Bool) in
            do throws(TokenVerifier.Failure) {
                let identity = try await tokens.verify(token)
                guard let userId = identity.userId else { return (.success(identity), true) }
                return (.success(identity), await reservation.leaseClusterSlot(of: userId, limit: userLimit))
            } catch {
                return (.failure(error), true)
            }
        }
        verification.whenSuccess { [self] result, leased in
            self.finishAuthentication(result, leased: leased, id: id)
        }
    }

    private func finishAuthentication(_ result: Result<Identity, TokenVerifier.Failure>, leased: Bool, id: RequestID?) {
        session.isWaiting = false
        switch result {
        case .failure(let failure):
            reply(.error(.unauthorized, failure.description), id: id)
            node.authenticationFailed(ip: ip, connectionId: self.id, detail: "in-band auth: \(failure.description)")
        case .success(let identity):
            if let userId = identity.userId {
                do {
                    guard leased else { throw ConnectionPools.Exhausted.perUser }
                    try reservation.reassign(to: userId)
                } catch {
                    node.audit.record(SecurityEvent(
                        .connectionLimit, ip: ip, userId: userId, connectionId: self.id, detail: "per-user pool full after auth"))
                    terminate(code: .poolLimit, reason: "too many connections for this user")
                    return
                }
            }
            node.statistics.recordAuth(succeeded: true)
            node.connections.changeUser(self, from: session.identity.userId, to: identity.userId)
            node.statistics.recordRoleChange(from: session.identity.role, to: identity.role, transport: metricsTransport)
            session.identity = identity
            revokeSubscriptionsNoLongerAllowed()
            scheduleExpiry()
            reply(.authenticated(identity), id: id)
        }
        resumeDeferredMessages()
    }

    /// Handles the messages held back while a request was pending, in order, until one is pending again.
    func resumeDeferredMessages() {
        let deferred = session.deferred
        session.deferred.removeAll()
        for (index, request) in deferred.enumerated() {
            handle(request)
            if session.isWaiting {
                // Another request is pending: keep the rest waiting behind it, in order.
                session.deferred.insert(contentsOf: deferred[(index + 1)...], at: 0)
                return
            }
        }
    }

    /// After a change of identity, drops subscriptions the new identity may not hold (e.g. another user's `user:` channel).
    private func revokeSubscriptionsNoLongerAllowed() {
        for channel in session.subscriptions {
            do {
                try node.hub.directory.authorizeSubscribe(channel, by: session.identity)
            } catch {
                removeSubscription(channel)
                reply(.unsubscribed(channel: channel), id: nil)
            }
        }
    }

    /// SPEC §2: a token that expires while the connection is open closes it with 4004 unless a fresh `auth` came first.
    private func scheduleExpiry() {
        session.deadline?.cancel()
        session.deadline = nil
        guard let expiresAt = session.identity.expiresAt else { return }
        let remainingMs = Int64((expiresAt - Double(Hub.wallClockMilliseconds()) / 1000) * 1000)
        session.deadline = eventLoop.scheduleTask(in: .milliseconds(max(0, remainingMs))) { [self] in
            if let current = self.session.identity.expiresAt, current <= expiresAt {
                self.terminate(code: .tokenExpired, reason: "token expired")
            }
        }
    }

    // MARK: subscribe, unsubscribe, publish

    /// The upgrade's `?subscribe=` channels, handled as `subscribe` messages without an `id`: each answered with
    /// `subscribed` or an error, in order, after `welcome`.
    func subscribeAtUpgrade(_ channels: [String]) {
        guard let cluster = node.cluster else {
            for channel in channels { subscribe(to: channel, since: nil, id: nil) }
            return
        }
        // A cluster node may first read some channels' history (see `subscribe`): all of them at once, then the
        // replies in order.
        let unprepared = channels.compactMap { name -> (String, Namespace)? in
            guard let (_, namespace) = try? node.hub.directory.resolve(name), cluster.needsPreparation(channel: name, namespace: namespace)
            else { return nil }
            return (name, namespace)
        }
        guard !unprepared.isEmpty else {
            for channel in channels { subscribe(to: channel, since: nil, id: nil, prepared: true) }
            return
        }
        waitForCluster({
            await withTaskGroup(of: Void.self) { group in
                for (name, namespace) in unprepared { group.addTask { await cluster.prepare(channel: name, namespace: namespace) } }
            }
        }) { [self] in
            for channel in channels { subscribe(to: channel, since: nil, id: nil, prepared: true) }
        }
    }

    /// Runs `work` off the loop while later messages wait (as behind an `auth`), then `then` on the loop, unless
    /// the connection ended meanwhile.
    private func waitForCluster(_ work: @escaping @Sendable () async -> Void, then: @escaping () -> Void) {
        session.isWaiting = true
        let done = eventLoop.makeFutureWithTask(work)
        let connection = NIOLoopBound(self, eventLoop: eventLoop)
        let next = NIOLoopBound(then, eventLoop: eventLoop)
        done.whenComplete { _ in
            let connection = connection.value
            connection.session.isWaiting = false
            guard !connection.tornDown else { return }
            next.value()
            connection.resumeDeferredMessages()
        }
    }

    /// - Parameter prepared: a cluster node has already read what the cluster holds of the channel (or tried to).
    private func subscribe(to name: String, since: UInt64?, id: RequestID?, prepared: Bool = false) {
        guard node.settings.allowAnonymous || session.identity.isAuthenticated else {
            reply(.error(.unauthorized, "authenticate first: anonymous access is off"), id: id)
            return
        }
        let channel: ChannelName
        let namespace: Namespace
        do {
            (channel, namespace) = try node.hub.directory.authorizeSubscribe(name, by: session.identity)
        } catch {
            reply(.error(error.code, error.message), id: id)
            return
        }
        if !session.subscriptions.contains(name) && session.subscriptions.count >= node.settings.maxSubscriptions {
            reply(.error(.subscriptionLimit, "at most \(node.settings.maxSubscriptions) subscriptions per connection"), id: id)
            return
        }
        // SPEC §8: history, last value and `since` answer the same on every node, so a node that has not seen
        // the channel whole reads it from Redis first.
        if !prepared, let cluster = node.cluster, cluster.needsPreparation(channel: name, namespace: namespace) {
            waitForCluster({ await cluster.prepare(channel: name, namespace: namespace) }) { [self] in
                subscribe(to: name, since: since, id: id, prepared: true)
            }
            return
        }
        if !session.subscriptions.contains(name) {
            session.subscriptions.append(name)
            node.statistics.recordSubscribed(namespace: namespace.name)
        }
        node.hub.subscribe(self, to: channel, namespace: namespace, since: since) { recovered in
            encode(.subscribed(channel: name, recovered: recovered), id: id)
        }
    }

    private func unsubscribe(from name: String, id: RequestID?) {
        guard ChannelName(name) != nil else {
            reply(.error(.badRequest, "invalid channel name"), id: id)
            return
        }
        removeSubscription(name)
        reply(.unsubscribed(channel: name), id: id)
    }

    /// Drops one subscription from the session, the hub and the counters.
    private func removeSubscription(_ name: String) {
        guard let index = session.subscriptions.firstIndex(of: name) else { return }
        session.subscriptions.remove(at: index)
        node.hub.unsubscribe(self, from: name)
        if let channel = ChannelName(name) { node.statistics.recordUnsubscribed(namespace: String(channel.namespace)) }
    }

    private func publish(_ publication: Publication, id: RequestID?) {
        guard session.identity.role.isAdmin else {
            reply(.error(.forbidden, "only admins may publish"), id: id)
            return
        }
        let target: BrokerTarget
        let resolved: Publication
        do {
            (resolved, target) = try node.resolve(publication, to: .channel(publication.channel))
        } catch {
            reply(.error(error.code, error.message), id: id)
            return
        }
        // An in-process broker answers at once; one that needs a round trip answers later, and the messages
        // after this one wait for it (as behind an `auth`), so replies keep their order.
        if let result = node.broker.publishImmediately(resolved, to: target) {
            reply(.published(channel: publication.channel, seq: result.seq), id: id)
            return
        }
        session.isWaiting = true
        let broker = node.broker
        let published = eventLoop.makeFutureWithTask { () async -> Result<Hub.PublishResult, BrokerError> in
            do throws(BrokerError) { return .success(try await broker.publish(resolved, to: target)) } catch { return .failure(error) }
        }
        published.whenSuccess { [self] result in
            self.session.isWaiting = false
            switch result {
            case .success(let result): self.reply(.published(channel: publication.channel, seq: result.seq), id: id)
            case .failure(let error):
                let failure = Node.PublishError.broker(error)
                self.reply(.error(failure.code, failure.message), id: id)
            }
            self.resumeDeferredMessages()
        }
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
