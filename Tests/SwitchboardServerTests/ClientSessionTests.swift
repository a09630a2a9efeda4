import SwitchboardCore
import Testing

@testable import SwitchboardServer

/// SPEC §3's request table on the pure session machine, without sockets: what each event asks the
/// connection to do, and that nothing happens once the session is closed.
@Suite struct ClientSessionTests {
    typealias Action = ClientSession.Action

    static let anonymous = Identity(userId: nil, role: .anonymous)
    static let alice = Identity(userId: "alice", role: .user)
    static let admin = Identity(userId: "root", role: .admin)

    func session(_ identity: Identity = anonymous, _ configure: (inout ClientSession.Configuration) -> Void = { _ in }) -> ClientSession {
        var configuration = ClientSession.Configuration()
        configure(&configuration)
        return ClientSession(identity: identity, rules: .init(configuration: configuration, directory: ChannelDirectory()))
    }

    func request(_ command: ClientRequest.Command, id: Int64? = nil) -> ClientSession.Event {
        .received(.success(ClientRequest(id: id.map { .int($0) }, command: command)))
    }

    /// The subscribe actions in `actions` (channel names).
    func subscribed(_ actions: [Action]) -> [String] {
        actions.compactMap { if case .subscribe(let subscription, _) = $0 { subscription.name } else { nil } }
    }

    @Test func pingIsAnsweredWithPongCarryingItsId() {
        var machine = session()
        #expect(machine.handle(request(.ping, id: 7)) == [.reply(.pong, id: .int(7))])
    }

    @Test func subscribeToAnAllowedChannelAsksTheHubAndCountsOnce() {
        var machine = session()
        let first = machine.handle(request(.subscribe(channel: "market_data:AAPL", since: nil, epoch: nil), id: 1))
        #expect(subscribed(first) == ["market_data:AAPL"])
        guard case .subscribe(_, let isNew)? = first.first else { Issue.record("expected a subscribe, got \(first)"); return }
        #expect(isNew)
        // Idempotent (SPEC §4): asked again, not counted again.
        let again = machine.handle(request(.subscribe(channel: "market_data:AAPL", since: nil, epoch: nil), id: 2))
        guard case .subscribe(_, let isNewAgain)? = again.first else { Issue.record("expected a subscribe, got \(again)"); return }
        #expect(!isNewAgain)
        #expect(machine.subscriptions == ["market_data:AAPL"])
    }

    @Test func forbiddenUnknownAndBadChannelsAreRefusedWithTheirCodes() {
        var machine = session()
        let forbidden = machine.handle(request(.subscribe(channel: "admin", since: nil, epoch: nil), id: 1))
        let unknown = machine.handle(request(.subscribe(channel: "nope:x", since: nil, epoch: nil), id: 2))
        let bad = machine.handle(request(.subscribe(channel: "market_data:a b", since: nil, epoch: nil), id: 3))
        func code(_ actions: [Action]) -> ErrorCode? {
            if case .reply(.error(let code, _), _)? = actions.first { return code }
            return nil
        }
        #expect(code(forbidden) == .forbidden)
        #expect(code(unknown) == .unknownChannel)
        #expect(code(bad) == .badRequest)
        #expect(machine.subscriptions.isEmpty)
    }

    @Test func theSubscriptionLimitHolds() {
        var machine = session { $0.maxSubscriptions = 2 }
        _ = machine.handle(request(.subscribe(channel: "market_data:A", since: nil, epoch: nil)))
        _ = machine.handle(request(.subscribe(channel: "market_data:B", since: nil, epoch: nil)))
        let third = machine.handle(request(.subscribe(channel: "market_data:C", since: nil, epoch: nil), id: 3))
        #expect(third == [.reply(.error(.subscriptionLimit, "at most 2 subscriptions per connection"), id: .int(3))])
    }

    @Test func onlyAdminsPublishAndTheReplyWaitsForTheBroker() {
        var user = session(Self.alice)
        let refused = user.handle(request(.publish(channel: "market_data:A", event: "q", data: "1", key: nil), id: 1))
        #expect(refused == [.reply(.error(.forbidden, "only admins may publish"), id: .int(1))])

        var admin = session(Self.admin)
        let publish = admin.handle(request(.publish(channel: "market_data:A", event: "q", data: "1", key: nil), id: 2))
        #expect(publish == [.publish(Publication(channel: "market_data:A", event: "q", data: "1"), id: .int(2))])
        // A ping behind the pending publish waits, so replies keep their requests' order.
        #expect(admin.handle(request(.ping, id: 3)) == [])
        let answered = admin.handle(.answered(.published(channel: "market_data:A", seq: 1), id: .int(2)))
        #expect(answered == [.reply(.published(channel: "market_data:A", seq: 1), id: .int(2)), .reply(.pong, id: .int(3))])
    }

    @Test func authAdoptsTheIdentityAfterItsSlotIsClaimedAndRequestsBehindItWait() {
        var machine = session()
        #expect(machine.handle(request(.auth(token: "T"), id: 1)) == [.verifyToken("T")])
        #expect(machine.handle(request(.subscribe(channel: "user:alice", since: nil, epoch: nil), id: 2)) == [])
        #expect(machine.handle(.tokenVerified(.success(Self.alice), leased: true)) == [.claimIdentity(Self.alice)])
        let adopted = machine.handle(.identityClaimed(true))
        #expect(adopted.first == .adopt(from: Self.anonymous, to: Self.alice))
        #expect(adopted.contains(.reply(.authenticated(Self.alice), id: .int(1))))
        // The subscribe that waited is handled as the new identity, after the `authenticated` reply.
        #expect(subscribed(adopted) == ["user:alice"])
        #expect(machine.identity == Self.alice)
    }

    @Test func aRefusedTokenIsUnauthorizedAndCounted() {
        var machine = session()
        _ = machine.handle(request(.auth(token: "T"), id: 1))
        let refused = machine.handle(.tokenVerified(.failure(.init(description: "bad signature")), leased: true))
        #expect(refused == [.reply(.error(.unauthorized, "bad signature"), id: .int(1)), .authenticationFailed("in-band auth: bad signature")])
    }

    @Test func aFullUserPoolAfterAuthClosesWith4029() {
        var machine = session()
        _ = machine.handle(request(.auth(token: "T")))
        _ = machine.handle(.tokenVerified(.success(Self.alice), leased: true))
        let refused = machine.handle(.identityClaimed(false))
        #expect(refused.contains(.close(.poolLimit, reason: "too many connections for this user")))
        #expect(machine.isClosed)
    }

    /// The ghost-connection defect: a completion that arrives after the transport closed must not register,
    /// subscribe or count anything.
    @Test func completionsAfterTheTransportClosedYieldNothing() {
        var machine = session()
        _ = machine.handle(request(.subscribe(channel: "market_data:A", since: nil, epoch: nil)))
        _ = machine.handle(request(.auth(token: "T")))
        for _ in 0..<5 { _ = machine.handle(request(.subscribe(channel: "user:alice", since: nil, epoch: nil))) }
        #expect(machine.handle(.transportClosed) == [.release(subscriptions: ["market_data:A"])])
        #expect(machine.handle(.tokenVerified(.success(Self.alice), leased: true)) == [])
        #expect(machine.handle(.identityClaimed(true)) == [])
        #expect(machine.handle(.prepared) == [])
        #expect(machine.handle(.answered(.pong, id: nil)) == [])
        #expect(machine.handle(request(.subscribe(channel: "market_data:B", since: nil, epoch: nil))) == [])
        #expect(machine.handle(.timerFired(.authTimeout)) == [])
        #expect(machine.handle(.closeRequested(.disconnectedByAdmin, reason: "x")) == [])
        #expect(machine.subscriptions.isEmpty)
    }

    @Test func aCloseReleasesEverythingAtOnce() {
        var machine = session()
        _ = machine.handle(request(.subscribe(channel: "market_data:A", since: nil, epoch: nil)))
        let closing = machine.handle(.closeRequested(.slowConsumer, reason: "slow"))
        #expect(closing == [.close(.slowConsumer, reason: "slow"), .release(subscriptions: ["market_data:A"])])
        #expect(machine.handle(.transportClosed) == [])
    }

    @Test func theMessageRateRepliesRateLimitedOnceReportedThenClosesAbuseWith4008() {
        var machine = session { $0.messageRate = 60; $0.messageBurst = 2 }
        #expect(machine.handle(request(.ping, id: 1)) == [.reply(.pong, id: .int(1))])
        #expect(machine.handle(request(.ping, id: 2)) == [.reply(.pong, id: .int(2))])
        let limited = machine.handle(request(.ping, id: 3))
        #expect(limited.first == .rateLimited(report: true))
        #expect(limited.last == .reply(.error(.rateLimited, "too many messages: at most 60 per minute"), id: .int(3)))
        var actions: [Action] = []
        for _ in 0..<10 where !machine.isClosed { actions = machine.handle(.controlReceived) }
        #expect(actions.contains(.close(.rateLimitAbuse, reason: "message rate limit abused")))
    }

    @Test func theAuthTimeoutClosesOnlyAnUnauthenticatedSession() {
        var anonymous = session { $0.allowAnonymous = false }
        #expect(anonymous.start() == [.setTimer(.authTimeout)])
        #expect(anonymous.handle(.timerFired(.authTimeout)).first == .close(.authTimeout, reason: "not authenticated in time"))

        var user = session(Self.alice) { $0.allowAnonymous = false }
        #expect(user.start() == [])
        #expect(user.handle(.timerFired(.authTimeout)) == [])
    }

    @Test func aStaleExpiryTimerAfterAFreshAuthDoesNotClose() {
        var expiring = Identity(userId: "alice", role: .user, expiresAt: 100)
        var machine = session(expiring)
        #expect(machine.start() == [.setTimer(.expiry(at: 100))])
        _ = machine.handle(request(.auth(token: "T")))
        expiring.expiresAt = 200
        _ = machine.handle(.tokenVerified(.success(expiring), leased: true))
        #expect(machine.handle(.identityClaimed(true)).contains(.setTimer(.expiry(at: 200))))
        #expect(machine.handle(.timerFired(.expiry(at: 100))) == [])
        #expect(machine.handle(.timerFired(.expiry(at: 200))).first == .close(.tokenExpired, reason: "token expired"))
    }

    @Test func aClusterNodePreparesBeforeSubscribingAndKeepsOrder() {
        var machine = session { $0.preparesChannels = true }
        let first = machine.handle(request(.subscribe(channel: "market_data:A", since: 3, epoch: nil), id: 1))
        guard case .prepare(let waiting)? = first.first else { Issue.record("expected a prepare, got \(first)"); return }
        #expect(waiting.map(\.name) == ["market_data:A"])
        #expect(machine.handle(request(.ping, id: 2)) == [])
        let prepared = machine.handle(.prepared)
        #expect(subscribed(prepared) == ["market_data:A"])
        #expect(prepared.last == .reply(.pong, id: .int(2)))
    }

    @Test func tooManyRequestsBehindAPendingOneCloseWith4008() {
        var machine = session { $0.maxDeferred = 3; $0.messageBurst = 100; $0.messageRate = 6000 }
        _ = machine.handle(request(.auth(token: "T")))
        for _ in 0..<3 { #expect(machine.handle(request(.ping)) == []) }
        #expect(machine.handle(request(.ping)).first == .close(.rateLimitAbuse, reason: "too many messages while a request is pending"))
    }

    // MARK: SPEC §14's server-side subscriptions

    @Test func theServersSubscribePassesTheRulesButNotTheLimitAndWaitsItsTurn() {
        var machine = session(Self.alice) { $0.maxSubscriptions = 2 }
        // `admin` is beyond a user's rules: the backend's word admits it.
        #expect(subscribed(machine.handle(.subscribedByServer("admin"))) == ["admin"])
        #expect(machine.handle(.subscribedByServer("nope:x")).isEmpty, "a namespace that does not exist: nothing")
        #expect(machine.handle(.subscribedByServer("admin")).isEmpty, "already held: nothing")
        // A publish is pending (an admin's): the server's request waits behind it, in order.
        var admin = session(Self.admin) { $0.maxSubscriptions = 1 }
        _ = admin.handle(request(.publish(channel: "admin", event: "e", data: "1", key: nil), id: 1))
        #expect(admin.handle(.subscribedByServer("system_status")).isEmpty)
        let resumed = admin.handle(.answered(.published(channel: "admin", seq: 1), id: .int(1)))
        #expect(subscribed(resumed) == ["system_status"])
        // At the limit: not made, and the client is told.
        let refused = admin.handle(.subscribedByServer("market_data:AAPL"))
        guard case .reply(.error(.subscriptionLimit, _), nil)? = refused.first else { Issue.record("\(refused)"); return }
        #expect(admin.subscriptions == ["system_status"])
    }

    @Test func theServersUnsubscribeTellsTheClientWhyOnlyWhenItHeldTheChannel() {
        var machine = session(Self.alice)
        _ = machine.handle(.subscribedByServer("system_status"))
        #expect(machine.handle(.unsubscribedByServer("system_status", reason: "licence ended")) == [
            .unsubscribe("system_status"), .reply(.unsubscribed(channel: "system_status", reason: "licence ended"), id: nil),
        ])
        #expect(machine.handle(.unsubscribedByServer("system_status", reason: "again")).isEmpty)
        #expect(machine.subscriptions.isEmpty)
    }

    @Test func anAuthWithDataAsksTheConnectProxyAndANonAnswerIsNotAFailedAuthentication() {
        var without = session()
        let refused = without.handle(request(.authWithData(.object(["sid": .string("s")])), id: 1))
        guard case .reply(.error(.badRequest, _), _)? = refused.first else { Issue.record("\(refused)"); return }
        var machine = session { $0.hasConnectProxy = true }
        #expect(machine.handle(request(.authWithData(.object(["sid": .string("s")])), id: 2)) == [.askConnectProxy(.object(["sid": .string("s")]))])
        let unavailable = machine.handle(.tokenVerified(.failure(.init(description: "no answer", counted: false)), leased: true))
        #expect(unavailable == [.reply(.error(.unavailable, "no answer"), id: .int(2))], "answered, not counted")
        _ = machine.handle(request(.authWithData(.object([:])), id: 3))
        let forged = machine.handle(.tokenVerified(.failure(.init(description: "forged")), leased: true))
        #expect(forged == [.reply(.error(.unauthorized, "forged"), id: .int(3)), .authenticationFailed("in-band auth: forged")])
    }
}
