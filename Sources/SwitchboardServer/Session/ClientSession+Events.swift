import SwitchboardCore

/// What goes in and out of ``ClientSession``: its configuration, events and actions.
extension ClientSession {
    /// The limits and rules a session applies (SPEC §2, §3, §10).
    struct Configuration: Sendable {
        /// Anonymous connections may subscribe; when false, the auth timeout applies.
        var allowAnonymous = true
        /// Most channels one connection holds.
        var maxSubscriptions = 50
        /// Inbound messages per minute, and burst.
        var messageRate = 100
        var messageBurst = 20
        /// Time to authenticate when anonymous access is off.
        var authTimeout: Duration = .seconds(5)
        /// A cluster node reads a channel's history before its first subscribe (SPEC §8): subscribes go through
        /// ``Action/prepare(_:)``.
        var preparesChannels = false
        /// A subscribe proxy is configured (SPEC §14): a `subscribe-proxy: true` namespace's subscribes the rules do not
        /// allow go through ``Action/askSubscribeProxy(_:)``.
        var hasSubscribeProxy = false
        /// A connect proxy is configured (SPEC §14): an `auth` with `data` goes through ``Action/askConnectProxy(_:)``.
        var hasConnectProxy = false
        /// Most requests held back while one is pending; more is abuse (closed with 4008).
        var maxDeferred = 64
    }

    /// What every session of a node applies: its configuration and channel directory, held once per node
    /// (a session keeps a reference, not a copy: memory per idle connection).
    final class Rules: Sendable {
        let configuration: Configuration
        let directory: ChannelDirectory

        init(configuration: Configuration, directory: ChannelDirectory) {
            self.configuration = configuration
            self.directory = directory
        }
    }

    /// Something that happened to the session.
    enum Event {
        /// A request from the client (or the refusal of one that could not be decoded), before the rate check.
        case received(Result<ClientRequest, ClientRequestError>)
        /// A frame that is no request (a WebSocket ping): it counts toward the message rate (SPEC §7) only.
        case controlReceived
        /// The upgrade's `?subscribe=` channels: subscribed in order, without ids.
        case subscribeAtUpgrade([String])
        /// The token of an `auth` was checked (and, in cluster mode, the user's cluster-wide slot taken: `leased`).
        case tokenVerified(Result<Identity, TokenRefusal>, leased: Bool)
        /// The driver moved the connection's pool slot to the new identity's user (false: that pool is full).
        case identityClaimed(Bool)
        /// The cluster read what it holds of the channels of a pending ``Action/prepare(_:)``.
        case prepared
        /// The subscribe proxy answered a pending ``Action/askSubscribeProxy(_:)``.
        case subscribeProxyAnswered(PlatformBackend.SubscribeAnswer)
        /// A pending request (a publish) has its answer.
        case answered(SessionReply, id: RequestID?)
        /// A timer the session set fired.
        case timerFired(Timer)
        /// The platform's backend subscribed the session's user to this channel (SPEC §14): the backend's word, so
        /// the namespace rules are not asked again; the channel must exist and the subscription limit holds.
        case subscribedByServer(String)
        /// The backend removed the session's user from this channel; the client is told `reason`.
        case unsubscribedByServer(String, reason: String)
        /// The session must end: an admin disconnect, a block, a slow consumer, shutdown (SPEC §3's close codes).
        case closeRequested(CloseCode, reason: String)
        /// The transport ended (the client left, the socket failed).
        case transportClosed
    }

    /// Why a token (or the platform's credentials) was refused (its description is the error message).
    struct TokenRefusal: Error, Equatable {
        var description: String
        /// Counted toward the IP's block; false when the platform's backend did not answer (`UNAVAILABLE`).
        var counted = true
    }

    /// Longest a session timer is set for, in seconds (a year): a token valid for longer is checked again then.
    static let longestTimer: Double = 365 * 24 * 3600

    /// The one timer a session holds: the auth timeout before authentication, the token's expiry after.
    enum Timer: Equatable {
        case authTimeout
        /// The identity's `exp` (seconds since the epoch) when the timer was set.
        case expiry(at: Double)
    }

    /// A subscribe the machine admitted: what the hub needs.
    struct Subscription: Equatable {
        var name: String
        var channel: ChannelName
        var namespace: Namespace
        var since: UInt64?
        var epoch: String?
        var id: RequestID?
        /// The rules do not allow it: the subscribe proxy decides (SPEC §14).
        var needsProxy = false
    }

    /// What the driver must do, in order.
    enum Action: Equatable {
        /// Send this reply to the client.
        case reply(SessionReply, id: RequestID?)
        /// Check this token (and in cluster mode lease the user's slot), then feed ``Event/tokenVerified(_:leased:)``.
        case verifyToken(String)
        /// Move the pool slot to `identity`'s user, then feed ``Event/identityClaimed(_:)``.
        case claimIdentity(Identity)
        /// The session's identity changed: registry and counters follow.
        case adopt(from: Identity, to: Identity)
        /// Ask the platform's connect proxy who these credentials are (SPEC §14), then feed
        /// ``Event/tokenVerified(_:leased:)`` as a token check would.
        case askConnectProxy(JSONValue)
        /// Ask the platform's subscribe proxy (SPEC §14), then feed ``Event/subscribeProxyAnswered(_:)``.
        case askSubscribeProxy(Subscription)
        /// Have the cluster read these channels (names and namespaces), then feed ``Event/prepared``.
        case prepare([Subscription])
        /// Subscribe in the hub (the session counted it when `isNew`); the `subscribed` reply comes with the replay.
        case subscribe(Subscription, isNew: Bool)
        /// Drop a subscription from the hub and the counters.
        case unsubscribe(String)
        /// Publish this on its channel (admins only, already checked), then feed ``Event/answered(_:id:)``.
        case publish(Publication, id: RequestID?)
        /// (Re)arm the session's timer; it replaces any armed one.
        case setTimer(Timer)
        /// A message over the rate: counted; `report` for the first of the connection (a security event).
        case rateLimited(report: Bool)
        /// Far over the rate (SPEC §3: over 3x): counted and reported before the 4008 close.
        case rateAbused
        /// An in-band `auth` failed (counted toward IP blocking).
        case authenticationFailed(String)
        /// The user's pool was full after an in-band `auth` (a security event before the close).
        case poolExhausted(userId: String)
        /// End the transport with this code (SPEC §3). Always followed by ``release(subscriptions:)``.
        case close(CloseCode, reason: String)
        /// The session is over: cancel the timer, drop these subscriptions, give back the slot and registration.
        case release(subscriptions: [String])
    }

    /// A request the session handles in arrival order, waiting while another is pending: the client's, or the
    /// platform's backend's (SPEC §14's server-side subscriptions).
    enum Request {
        case client(Result<ClientRequest, ClientRequestError>)
        case subscribeByServer(String)
        case unsubscribeByServer(String, reason: String)

        var isClient: Bool {
            if case .client = self { return true }
            return false
        }
    }
}

extension Result<ClientRequest, ClientRequestError> {
    /// The request's `id`, read by the decoder even from a request it refused (SPEC §3: refusals carry it).
    var requestID: RequestID? {
        switch self {
        case .success(let request): request.id
        case .failure(let error): error.id
        }
    }
}
