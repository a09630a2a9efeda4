import SwitchboardCore
import Testing

/// Socket.IO 5's session rules above Engine.IO (SPEC §9), without sockets.
@Suite struct SocketIOSessionTests {
    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test func connectAuthenticatesWithTheAuthTokenAndIsAnsweredWithTheSid() {
        var session = SocketIOSession(now: 0)
        #expect(session.received(Self.bytes(#"0{"token":"jwt"}"#)) == [.authenticate(token: "jwt")])
        #expect(session.accepted(sid: "s9") == [.send(SocketPacket(.connect, payload: .object(["sid": .string("s9")])))])
        #expect(session.isConnected)
        var anonymous = SocketIOSession(now: 0)
        #expect(anonymous.received(Self.bytes("0")) == [.authenticate(token: nil)])
    }

    @Test func otherNamespacesAreRefusedAndTheMainOneStillWorks() {
        var session = SocketIOSession(now: 0)
        let refused = session.received(Self.bytes("0/admin,"))
        #expect(refused == [.send(SocketPacket(.connectError, namespace: "/admin", payload: .object(["message": .string("Invalid namespace")])))])
        #expect(session.received(Self.bytes("0")) == [.authenticate(token: nil)])
    }

    @Test func aRefusedConnectEndsWithTheErrorCodeInData() {
        var session = SocketIOSession(now: 0)
        _ = session.received(Self.bytes(#"0{"token":"bad"}"#))
        let actions = session.refused(code: "UNAUTHORIZED", message: "invalid token")
        #expect(actions.first == .send(SocketPacket(
            .connectError, payload: .object(["message": .string("invalid token"), "data": .object(["code": .string("UNAUTHORIZED")])]))))
        #expect(actions.last == .close(reason: "connect refused: UNAUTHORIZED"))
        #expect(session.received(Self.bytes(#"2["ping"]"#)) == [])
    }

    @Test func eventsBecomeTheProtocolsRequestsWithTheirAckIds() throws {
        var session = SocketIOSession(now: 0)
        _ = session.received(Self.bytes("0"))
        _ = session.accepted(sid: "s")
        #expect(session.received(Self.bytes(#"21["subscribe","market_data:AAPL"]"#))
            == [.request(.success(ClientRequest(id: .int(1), command: .subscribe(channel: "market_data:AAPL", since: nil, epoch: nil))))])
        #expect(session.received(Self.bytes(#"22["subscribe",{"channel":"market_data:AAPL","since":41}]"#))
            == [.request(.success(ClientRequest(id: .int(2), command: .subscribe(channel: "market_data:AAPL", since: 41, epoch: nil))))])
        #expect(session.received(Self.bytes(#"2["unsubscribe","x"]"#)) == [.request(.success(ClientRequest(id: nil, command: .unsubscribe(channel: "x"))))])
        #expect(session.received(Self.bytes(#"23["auth",{"token":"t2"}]"#)) == [.request(.success(ClientRequest(id: .int(3), command: .auth(token: "t2"))))])
        #expect(session.received(Self.bytes(#"24["publish",{"channel":"c","event":"e","data":{"a":1},"key":"k"}]"#))
            == [.request(.success(ClientRequest(id: .int(4), command: .publish(channel: "c", event: "e", data: #"{"a":1}"#, key: "k"))))])
        // Refusals go to the session (its message rate and outbound path), which answers through the ack.
        let unknown = session.received(Self.bytes(#"25["explode"]"#))
        guard case .request(.failure(let refusal))? = unknown.first else {
            Issue.record("no refusal for an unknown event: \(unknown)")
            return
        }
        #expect(refusal.id == .int(5) && refusal.message.contains("unknown event"))
        let reserved = session.received(Self.bytes(#"26["publish",{"channel":"c","event":"disconnect","data":1}]"#))
        #expect(reserved.count == 1 && reserved.first.map { if case .request(.failure) = $0 { true } else { false } } == true, "reserved names refused here too")
        #expect(session.received(Self.bytes(#"2["explode"]"#)) == [.unanswered], "without an ack id there is no one to tell, but it counts")
        #expect(session.received(Self.bytes(#"3/x,1[]"#)) == [.unanswered], "an ack nobody asked for counts")
        #expect(session.received(Self.bytes("1")) == [.close(reason: "the client disconnected")])
    }

    @Test func packetsBeforeConnectBadPacketsAndTheTimeoutEndTheSession() {
        var early = SocketIOSession(now: 0)
        #expect(early.received(Self.bytes(#"2["subscribe","x"]"#)) == [.close(reason: "packet before the session was connected")])
        var garbled = SocketIOSession(now: 0)
        #expect(garbled.received(Self.bytes("9")).first.map { if case .close = $0 { true } else { false } } == true)
        var slow = SocketIOSession(now: 0, connectTimeoutMs: 100)
        #expect(slow.tick(now: 99) == [])
        #expect(slow.tick(now: 100) == [.close(reason: "no CONNECT in time")])
    }

    @Test func packetsWhileTheConnectIsCheckedAreHandledInOrderOnceItIsAccepted() {
        var session = SocketIOSession(now: 0)
        #expect(session.received(Self.bytes(#"0{"token":"jwt"}"#)) == [.authenticate(token: "jwt")])
        #expect(session.received(Self.bytes(#"21["subscribe","a"]"#)) == [])
        #expect(session.received(Self.bytes(#"22["subscribe","b"]"#)) == [])
        let actions = session.accepted(sid: "s")
        #expect(actions == [
            .send(SocketPacket(.connect, payload: .object(["sid": .string("s")]))),
            .request(.success(ClientRequest(id: .int(1), command: .subscribe(channel: "a", since: nil, epoch: nil)))),
            .request(.success(ClientRequest(id: .int(2), command: .subscribe(channel: "b", since: nil, epoch: nil)))),
        ])
        // Bounded: a client that floods while its CONNECT is checked is dropped.
        var flooding = SocketIOSession(now: 0)
        _ = flooding.received(Self.bytes("0"))
        for _ in 0..<SocketIOSession.maxPendingPackets { #expect(flooding.received(Self.bytes(#"2["ping"]"#)) == []) }
        #expect(flooding.received(Self.bytes(#"2["ping"]"#)) == [.close(reason: "too many packets while CONNECT was checked")])
        // Refused: what was kept is dropped with the session.
        var refused = SocketIOSession(now: 0)
        _ = refused.received(Self.bytes("0"))
        _ = refused.received(Self.bytes(#"21["subscribe","a"]"#))
        #expect(refused.refused(code: "UNAUTHORIZED", message: "no").count == 2)
    }

    @Test func aServerDisconnectSendsDisconnectSoTheClientStaysAway() {
        var session = SocketIOSession(now: 0)
        _ = session.received(Self.bytes("0"))
        _ = session.accepted(sid: "s")
        #expect(session.disconnect(reason: "admin") == [.send(SocketPacket(.disconnect)), .close(reason: "admin")])
        #expect(session.disconnect(reason: "again") == [])
    }
}
