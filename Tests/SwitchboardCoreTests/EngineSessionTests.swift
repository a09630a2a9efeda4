import SwitchboardCore
import Testing

/// Engine.IO 4's request routing and session rules (SPEC §9), without sockets.
@Suite struct EngineSessionTests {
    static let configuration = EngineSession.Configuration(pingIntervalMs: 1_000, pingTimeoutMs: 500, maxPayload: 100)

    static func message(_ text: String) -> EnginePacket { EnginePacket(.message, text: text) }

    @Test func requestsAreToldApartOrRefusedWithEngineIOsCodes() {
        func classify(_ method: String, _ query: [String: String], upgrade: Bool = false) -> Result<EngineRequest, EngineHTTPError> {
            EngineRequest.classify(method: method, query: query, isWebSocketUpgrade: upgrade)
        }
        #expect(classify("GET", ["EIO": "4", "transport": "polling"]) == .success(.handshake(.polling)))
        #expect(classify("GET", ["EIO": "4", "transport": "websocket"], upgrade: true) == .success(.handshake(.websocket)))
        #expect(classify("GET", ["EIO": "4", "transport": "polling", "sid": "s"]) == .success(.poll(sid: "s")))
        #expect(classify("POST", ["EIO": "4", "transport": "polling", "sid": "s"]) == .success(.post(sid: "s")))
        #expect(classify("GET", ["EIO": "4", "transport": "websocket", "sid": "s"], upgrade: true) == .success(.upgrade(sid: "s")))
        #expect(classify("GET", ["EIO": "3", "transport": "polling"]) == .failure(.unsupportedProtocolVersion))
        #expect(classify("GET", ["EIO": "4", "transport": "flash"]) == .failure(.unknownTransport))
        #expect(classify("POST", ["EIO": "4", "transport": "polling"]) == .failure(.badHandshakeMethod))
        #expect(classify("GET", ["EIO": "4", "transport": "websocket"]).map { _ in 0 } != .success(0), "websocket without an upgrade")
        if case .failure(let error) = classify("GET", ["transport": "polling"]) { #expect(error.code == 3) } else { Issue.record("no EIO accepted") }
        #expect(EngineHTTPError.unknownSession.body == #"{"code":1,"message":"Session ID unknown"}"#)
    }

    @Test func aPollingSessionOpensHoldsPollsAndLetsOneTakeWhatWaits() {
        var session = EngineSession(sid: "s1", transport: .polling, configuration: Self.configuration, now: 0)
        guard case .answerPoll(let open)? = session.opened().first, let text = open.first?.text else {
            Issue.record("no open packet")
            return
        }
        #expect(open.first?.kind == .open && text.contains(#""sid":"s1""#) && text.contains(#""upgrades":["websocket"]"#))
        #expect(text.contains(#""pingInterval":1000"#) && text.contains(#""pingTimeout":500"#) && text.contains(#""maxPayload":100"#))
        #expect(session.takePoll() == false, "no GET held")
        #expect(session.poll() == [], "the GET is held")
        #expect(session.isPollPending)
        #expect(session.takePoll() == true, "the held GET takes what waits in the queue")
        let again = session.takePoll()
        #expect(!again && !session.isPollPending, "once")
        #expect(session.poll() == [])
        #expect(session.posted(Array("4hello\u{1e}3".utf8)) == [.received(Array("hello".utf8))])
    }

    @Test func aSecondPendingPollOrABadBodyEndsTheSession() {
        var overlapping = EngineSession(sid: "s", transport: .polling, configuration: Self.configuration, now: 0)
        _ = overlapping.poll()
        let actions = overlapping.poll()
        #expect(actions.first == .refuse(.badRequest("a poll is already pending")))
        #expect(actions.contains(.answerPoll([EnginePacket(.close)])), "the first poll learns the session ended")
        #expect(overlapping.isClosed && overlapping.poll() == [.refuse(.unknownSession)])
        var tooBig = EngineSession(sid: "s", transport: .polling, configuration: Self.configuration, now: 0)
        #expect(tooBig.posted(Array(repeating: UInt8(ascii: "4"), count: 101)).contains(.close(reason: "bad polling payload")))
        var binary = EngineSession(sid: "s", transport: .polling, configuration: Self.configuration, now: 0)
        #expect(binary.posted(Array("bAQID".utf8)).contains(.close(reason: "binary message")))
        var pinging = EngineSession(sid: "s", transport: .polling, configuration: Self.configuration, now: 0)
        #expect(pinging.posted(Array("2".utf8)).contains(.close(reason: "unexpected packet")), "Engine.IO 4: only the server pings")
    }

    @Test func theServerPingsAndEndsASessionWhosePongIsLate() {
        var session = EngineSession(sid: "s", transport: .websocket, configuration: Self.configuration, now: 0)
        #expect(session.tick(now: 999) == [])
        #expect(session.tick(now: 1_000) == [.send(EnginePacket(.ping))])
        #expect(session.webSocketReceived(EnginePacket(.pong)) == [])
        #expect(session.tick(now: 1_600) == [], "answered: no timeout")
        #expect(session.tick(now: 2_000) == [.send(EnginePacket(.ping))])
        #expect(session.tick(now: 2_499) == [])
        #expect(session.tick(now: 2_500) == [.close(reason: "ping timeout")])
        #expect(session.isClosed)
    }

    @Test func aPollingClientIsPingedThroughTheQueue() {
        var session = EngineSession(sid: "s", transport: .polling, configuration: Self.configuration, now: 0)
        _ = session.poll()
        #expect(session.tick(now: 1_000) == [.send(EnginePacket(.ping))])
        #expect(session.posted(Array("3".utf8)) == [])
        #expect(session.tick(now: 1_700) == [])
    }

    @Test func duringTheUpgradeNoPollTakesTheQueueAndAfterItTheWebSocketDoes() {
        var session = EngineSession(sid: "s", transport: .polling, configuration: Self.configuration, now: 0)
        _ = session.poll()
        #expect(session.takePoll() == true)
        _ = session.poll()
        let probed = session.webSocketReceived(EnginePacket(.ping, text: "probe"))
        #expect(probed == [.writeProbe(EnginePacket(.pong, text: "probe")), .answerPoll([EnginePacket(.noop)])], "polling stops")
        #expect(session.takePoll() == false, "what is queued during the upgrade waits for the WebSocket")
        #expect(session.poll() == [.answerPoll([EnginePacket(.noop)])])
        #expect(session.takePoll() == false)
        #expect(session.webSocketReceived(EnginePacket(.upgrade)) == [.upgraded])
        #expect(session.transport == .websocket)
        #expect(session.takePoll() == false)
        #expect(session.poll() == [.refuse(.badRequest("the session moved to WebSocket"))])
        #expect(session.webSocketReceived(Self.message("up")) == [.received(Array("up".utf8))])
    }

    @Test func aProbeThatIsNotAProbeEndsTheSession() {
        var session = EngineSession(sid: "s", transport: .polling, configuration: Self.configuration, now: 0)
        #expect(session.webSocketReceived(Self.message("hi")) == [.close(reason: "unexpected packet while probing an upgrade")])
    }
}
