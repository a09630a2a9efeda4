import SwitchboardCore

/// The session protocol of SPEC §3 (and §9's Socket.IO events) as a pure state machine: events in, actions out.
///
/// It knows requests, identities, subscriptions, limits and timers, and nothing about sockets, event loops or
/// codecs: the connection that drives it (``SessionDriver``) carries out its actions and feeds it what
/// happened. Both wire protocols drive the same machine.
///
/// Asynchronous work (a token check, a cluster's preparation of a channel, a broker's publish) is an action
/// out and, later, an event in. While one is pending, later requests wait in order, so replies keep the order
/// of their requests. Once the session is closed (``Event/transportClosed`` or a close it decided itself),
/// every later event yields no action: a completion that arrives after the connection ended cannot register,
/// subscribe or count anything (SPEC §13), by construction rather than by a check at each call site.
struct ClientSession {
    /// Where the session is.
    private enum State {
        /// Requests are handled as they come.
        case ready
        /// A request is pending (auth, preparation, publish): later ones wait in `deferred`.
        case waiting(Pending)
        /// Ended: every event is ignored.
        case closed
    }

    /// The request being completed asynchronously (boxed: an idle session pays a pointer for it, not an identity).
    private indirect enum Pending {
        case auth(id: RequestID?)
        case claim(Identity, id: RequestID?)
        case preparation([Subscription])
        case subscribeProxy(Subscription)
        case publish
    }

    private let rules: Rules
    var configuration: Configuration { rules.configuration }
    private var directory: ChannelDirectory { rules.directory }
    private(set) var identity: Identity
    /// Channel names in subscription order (at most `maxSubscriptions`: an array is smaller than a set).
    private(set) var subscriptions: [String] = []
    private var rateLimiter: MessageRateLimiter
    private var reportedRateLimit = false
    private var state = State.ready
    private var deferred: [Request] = []

    init(identity: Identity, rules: Rules) {
        self.identity = identity
        self.rules = rules
        self.rateLimiter = MessageRateLimiter(perMinute: rules.configuration.messageRate, burst: rules.configuration.messageBurst)
    }

    /// Whether the session ended.
    var isClosed: Bool {
        if case .closed = state { return true }
        return false
    }

    /// The timer to arm when the session opens.
    func start() -> [Action] {
        if !configuration.allowAnonymous && !identity.isAuthenticated { return [.setTimer(.authTimeout)] }
        return expiryTimer()
    }

    /// Applies `event` and says what to do about it.
    mutating func handle(_ event: Event) -> [Action] {
        if case .closed = state { return [] }
        var actions: [Action] = []
        switch event {
        case .received(let request):
            guard admitByRate(id: request.requestID, reply: true, into: &actions) else { break }
            receive(.client(request), into: &actions)
        case .subscribedByServer(let name):
            receive(.subscribeByServer(name), into: &actions)
        case .unsubscribedByServer(let name, let reason):
            receive(.unsubscribeByServer(name, reason: reason), into: &actions)
        case .controlReceived:
            _ = admitByRate(id: nil, reply: false, into: &actions)
        case .subscribeAtUpgrade(let names):
            subscribeAtUpgrade(names, into: &actions)
        case .tokenVerified(let result, let leased):
            guard case .waiting(.auth(let id)) = state else { return [] }
            verified(result, leased: leased, id: id, into: &actions)
        case .identityClaimed(let claimed):
            guard case .waiting(.claim(let newIdentity, let id)) = state else { return [] }
            claimed ? adopt(newIdentity, id: id, into: &actions) : refusePool(newIdentity, into: &actions)
        case .prepared:
            guard case .waiting(.preparation(let waiting)) = state else { return [] }
            state = .ready
            for subscription in waiting { admitSubscribe(subscription, into: &actions) }
        case .subscribeProxyAnswered(let answer):
            guard case .waiting(.subscribeProxy(var subscription)) = state else { return [] }
            state = .ready
            switch answer {
            case .allowed:
                subscription.needsProxy = false
                proceed(with: subscription, into: &actions)
            case .forbidden(let reason):
                actions.append(.reply(.error(.forbidden, reason), id: subscription.id))
            case .unavailable(let reason):
                actions.append(.reply(.error(.unavailable, reason), id: subscription.id))
            }
            resumeDeferred(into: &actions)
        case .answered(let reply, let id):
            guard case .waiting(.publish) = state else { return [] }
            state = .ready
            actions.append(.reply(reply, id: id))
        case .timerFired(let timer):
            timerFired(timer, into: &actions)
        case .closeRequested(let code, let reason):
            close(code, reason, into: &actions)
        case .transportClosed:
            release(into: &actions)
        }
        resumeDeferred(into: &actions)
        return actions
    }

    // MARK: Requests

    /// SPEC §3's message rate: false when the message is refused (answered with `RATE_LIMITED` carrying `id`
    /// when `reply`) or the session ended for abuse.
    private mutating func admitByRate(id: RequestID?, reply: Bool, into actions: inout [Action]) -> Bool {
        switch rateLimiter.check() {
        case .allow:
            return true
        case .limit:
            actions.append(.rateLimited(report: !reportedRateLimit))
            reportedRateLimit = true
            if reply {
                actions.append(.reply(.error(.rateLimited, "too many messages: at most \(configuration.messageRate) per minute"), id: id))
            }
            return false
        case .abuse:
            actions.append(.rateAbused)
            close(.rateLimitAbuse, "message rate limit abused", into: &actions)
            return false
        }
    }

    /// The request, or its place in the queue behind a pending one.
    private mutating func receive(_ request: Request, into actions: inout [Action]) {
        guard case .ready = state else {
            // The bound is the client's: the backend's requests are not the client's abuse.
            guard deferred.count < configuration.maxDeferred || !request.isClient else {
                close(.rateLimitAbuse, "too many messages while a request is pending", into: &actions)
                return
            }
            deferred.append(request)
            return
        }
        handle(request, into: &actions)
    }

    /// Handles the requests that waited, in order, until one is pending again.
    private mutating func resumeDeferred(into actions: inout [Action]) {
        while case .ready = state, !deferred.isEmpty {
            handle(deferred.removeFirst(), into: &actions)
        }
    }

    private mutating func handle(_ request: Request, into actions: inout [Action]) {
        switch request {
        case .client(let decoded): handle(decoded, into: &actions)
        case .subscribeByServer(let name): subscribeByServer(name, into: &actions)
        case .unsubscribeByServer(let name, let reason):
            guard subscriptions.contains(name) else { return }
            removeSubscription(name, into: &actions)
            actions.append(.reply(.unsubscribed(channel: name, reason: reason), id: nil))
        }
    }

    private mutating func handle(_ decoded: Result<ClientRequest, ClientRequestError>, into actions: inout [Action]) {
        let request: ClientRequest
        switch decoded {
        case .success(let decoded): request = decoded
        case .failure(let error):
            actions.append(.reply(.error(.badRequest, error.message), id: error.id))
            return
        }
        switch request.command {
        case .auth(let token):
            state = .waiting(.auth(id: request.id))
            actions.append(.verifyToken(token))
        case .authWithData(let data) where configuration.hasConnectProxy:
            state = .waiting(.auth(id: request.id))
            actions.append(.askConnectProxy(data))
        case .authWithData:
            actions.append(.reply(.error(.badRequest, "auth with data needs the platform's connect proxy: send a token"), id: request.id))
        case .subscribe(let name, let since, let epoch):
            subscribe(name, since: since, epoch: epoch, id: request.id, into: &actions)
        case .unsubscribe(let name):
            guard ChannelName(name) != nil else {
                actions.append(.reply(.error(.badRequest, "invalid channel name"), id: request.id))
                return
            }
            removeSubscription(name, into: &actions)
            actions.append(.reply(.unsubscribed(channel: name), id: request.id))
        case .publish(let channel, let event, let data, let key):
            guard identity.role.isAdmin else {
                actions.append(.reply(.error(.forbidden, "only admins may publish"), id: request.id))
                return
            }
            state = .waiting(.publish)
            actions.append(.publish(Publication(channel: channel, event: event, data: data, key: key), id: request.id))
        case .ping:
            actions.append(.reply(.pong, id: request.id))
        }
    }

    // MARK: Subscriptions

    private mutating func subscribeAtUpgrade(_ names: [String], into actions: inout [Action]) {
        // Channels for the subscribe proxy wait their turn as requests would: one backend call at a time.
        var ignored: [Action] = []
        let (proxied, direct) = names.reduce(into: ([String](), [String]())) { split, name in
            if authorize(name, since: nil, epoch: nil, id: nil, into: &ignored)?.needsProxy == true { split.0.append(name) } else { split.1.append(name) }
        }
        deferred += proxied.map { .client(.success(ClientRequest(id: nil, command: .subscribe(channel: $0, since: nil, epoch: nil)))) }
        guard configuration.preparesChannels else {
            for name in direct { subscribe(name, since: nil, epoch: nil, id: nil, into: &actions) }
            resumeDeferred(into: &actions)
            return
        }
        // All of the upgrade's other channels are prepared at once, then answered in order.
        var admitted: [Subscription] = []
        for name in direct {
            if let subscription = authorize(name, since: nil, epoch: nil, id: nil, into: &actions) { admitted.append(subscription) }
        }
        guard !admitted.isEmpty else {
            resumeDeferred(into: &actions)
            return
        }
        state = .waiting(.preparation(admitted))
        actions.append(.prepare(admitted))
    }

    private mutating func subscribe(_ name: String, since: UInt64?, epoch: String?, id: RequestID?, into actions: inout [Action]) {
        guard let subscription = authorize(name, since: since, epoch: epoch, id: id, into: &actions) else { return }
        guard !subscription.needsProxy else {
            state = .waiting(.subscribeProxy(subscription))
            actions.append(.askSubscribeProxy(subscription))
            return
        }
        proceed(with: subscription, into: &actions)
    }

    /// An authorized subscribe: prepared first on a cluster node, then made.
    private mutating func proceed(with subscription: Subscription, into actions: inout [Action]) {
        guard configuration.preparesChannels else {
            admitSubscribe(subscription, into: &actions)
            return
        }
        state = .waiting(.preparation([subscription]))
        actions.append(.prepare([subscription]))
    }

    /// SPEC §14: the backend's subscribe, checked only for what it cannot waive: the channel exists and the
    /// subscription limit (over it, the subscribe is not made and the client is told).
    private mutating func subscribeByServer(_ name: String, into actions: inout [Action]) {
        guard let (channel, namespace) = try? directory.resolve(name), !subscriptions.contains(name) else { return }
        guard subscriptions.count < configuration.maxSubscriptions else {
            let message = "at most \(configuration.maxSubscriptions) subscriptions per connection: the server's subscribe to \(name) was not made"
            actions.append(.reply(.error(.subscriptionLimit, message), id: nil))
            return
        }
        let subscription = Subscription(name: name, channel: channel, namespace: namespace, since: nil, epoch: nil, id: nil)
        guard configuration.preparesChannels else {
            admitSubscribe(subscription, into: &actions)
            return
        }
        state = .waiting(.preparation([subscription]))
        actions.append(.prepare([subscription]))
    }

    /// SPEC §3/§4's checks of a subscribe: anonymous access, the namespace's rules, the subscription limit.
    private func authorize(
        _ name: String, since: UInt64?, epoch: String?, id: RequestID?, into actions: inout [Action]
    ) -> Subscription? {
        guard configuration.allowAnonymous || identity.isAuthenticated else {
            actions.append(.reply(.error(.unauthorized, "authenticate first: anonymous access is off"), id: id))
            return nil
        }
        let channel: ChannelName
        let namespace: Namespace
        var needsProxy = false
        do {
            (channel, namespace) = try directory.authorizeSubscribe(name, by: identity)
        } catch {
            // SPEC §14: what the rules and grants do not allow, a `subscribe-proxy` namespace asks the platform.
            guard error.reason == .forbidden, configuration.hasSubscribeProxy, let (resolved, proxied) = try? directory.resolve(name),
                proxied.subscribeProxy
            else {
                actions.append(.reply(.error(error.code, error.message), id: id))
                return nil
            }
            (channel, namespace, needsProxy) = (resolved, proxied, true)
        }
        guard subscriptions.contains(name) || subscriptions.count < configuration.maxSubscriptions else {
            let message = "at most \(configuration.maxSubscriptions) subscriptions per connection"
            actions.append(.reply(.error(.subscriptionLimit, message), id: id))
            return nil
        }
        return Subscription(name: name, channel: channel, namespace: namespace, since: since, epoch: epoch, id: id, needsProxy: needsProxy)
    }

    /// Records an authorized subscribe and hands it to the hub. The limit is checked again: other subscribes
    /// may have been admitted while this one was prepared.
    private mutating func admitSubscribe(_ subscription: Subscription, into actions: inout [Action]) {
        let isNew = !subscriptions.contains(subscription.name)
        if isNew {
            guard subscriptions.count < configuration.maxSubscriptions else {
                let message = "at most \(configuration.maxSubscriptions) subscriptions per connection"
                actions.append(.reply(.error(.subscriptionLimit, message), id: subscription.id))
                return
            }
            subscriptions.append(subscription.name)
        }
        actions.append(.subscribe(subscription, isNew: isNew))
    }

    private mutating func removeSubscription(_ name: String, into actions: inout [Action]) {
        guard let index = subscriptions.firstIndex(of: name) else { return }
        subscriptions.remove(at: index)
        actions.append(.unsubscribe(name))
    }

    // MARK: Authentication

    private mutating func verified(_ result: Result<Identity, TokenRefusal>, leased: Bool, id: RequestID?, into actions: inout [Action]) {
        switch result {
        case .failure(let refusal) where !refusal.counted:
            state = .ready
            actions.append(.reply(.error(.unavailable, refusal.description), id: id))
        case .failure(let refusal):
            state = .ready
            actions.append(.reply(.error(.unauthorized, refusal.description), id: id))
            actions.append(.authenticationFailed("in-band auth: \(refusal.description)"))
        case .success(let newIdentity):
            guard leased else {
                refusePool(newIdentity, into: &actions)
                return
            }
            guard newIdentity.userId != nil else {
                adopt(newIdentity, id: id, into: &actions)
                return
            }
            state = .waiting(.claim(newIdentity, id: id))
            actions.append(.claimIdentity(newIdentity))
        }
    }

    private mutating func adopt(_ newIdentity: Identity, id: RequestID?, into actions: inout [Action]) {
        state = .ready
        actions.append(.adopt(from: identity, to: newIdentity))
        identity = newIdentity
        // Subscriptions the new identity may not hold (another user's `user:` channel) go.
        for name in subscriptions where (try? directory.authorizeSubscribe(name, by: identity)) == nil {
            removeSubscription(name, into: &actions)
            actions.append(.reply(.unsubscribed(channel: name), id: nil))
        }
        actions += expiryTimer()
        actions.append(.reply(.authenticated(newIdentity), id: id))
    }

    private mutating func refusePool(_ newIdentity: Identity, into actions: inout [Action]) {
        actions.append(.poolExhausted(userId: newIdentity.userId ?? ""))
        close(.poolLimit, "too many connections for this user", into: &actions)
    }

    /// SPEC §2: a token that expires while the connection is open closes it with 4004 unless a fresh `auth` came first.
    private func expiryTimer() -> [Action] {
        identity.expiresAt.map { [.setTimer(.expiry(at: $0))] } ?? []
    }

    private mutating func timerFired(_ timer: Timer, into actions: inout [Action]) {
        switch timer {
        case .authTimeout:
            guard !identity.isAuthenticated else { return }
            close(.authTimeout, "not authenticated in time", into: &actions)
        case .expiry(let at):
            // A fresh `auth` moved the expiry (and set a new timer): this one is stale.
            guard let current = identity.expiresAt, current <= at else { return }
            close(.tokenExpired, "token expired", into: &actions)
        }
    }

    // MARK: Ending

    private mutating func close(_ code: CloseCode, _ reason: String, into actions: inout [Action]) {
        actions.append(.close(code, reason: reason))
        release(into: &actions)
    }

    private mutating func release(into actions: inout [Action]) {
        state = .closed
        deferred.removeAll()
        actions.append(.release(subscriptions: subscriptions))
        subscriptions.removeAll()
    }
}
