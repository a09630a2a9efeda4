import Foundation
import NIOCore
import SwitchboardCore

/// An admitted Socket.IO session (SPEC §9): the same session protocol, pools, limits, stats and admin API as a
/// `/ws` connection (a ``SessionDriver`` running the same ``ClientSession``), speaking through the Socket.IO codec over its ``EngineConnection``.
///
/// Channel messages reach it through its loop's Socket.IO lanes (``LoopFanout``), which write the shared
/// Socket.IO frame straight to the socket while the session is on a WebSocket that allows it, as for a native
/// connection, and otherwise queue it in the engine session's one outbound queue, as every other packet.
///
/// `@unchecked Sendable`: the hub calls ``deliver(_:)`` from any thread, which only touches the engine session's
/// thread-safe ``Outbox`` and hops to the event loop; every other member is confined to `eventLoop`.
final class SocketIOClient: SessionTransport, LaneMemberConnection, @unchecked Sendable {
    enum Transport: String {
        case polling = "socketio-polling"
        case webSocket = "socketio-websocket"
    }

    let node: Node
    let reservation: SlotReservation
    /// The session protocol (SPEC §3, §9), carried out by its driver.
    var session: SessionDriver<SocketIOClient>
    /// The engine session that carries this client (which lets go of the client when it ends).
    private let engine: EngineConnection
    let eventLoop: any EventLoop
    /// The loop's Socket.IO slot table (the compressing one when the session's WebSocket compresses at CONNECT).
    private let loopFanout: LoopFanout
    /// This client's slot in ``loopFanout``, from `start` to `tearDown`.
    private var fanoutMember: UInt64?
    var transport: Transport = .polling
    let connectedAt = Date()
    private var messagesIn = 0
    private var messagesOut = 0

    var id: String { reservation.connectionId }
    var metricsTransport: NodeStatistics.Transport { .socketio }
    var ip: String { reservation.ip }

    init(engine: EngineConnection, admitted: AdmittedUpgrade) {
        self.node = engine.node
        self.engine = engine
        self.eventLoop = engine.eventLoop
        self.reservation = admitted.reservation
        self.session = SessionDriver(identity: admitted.identity, rules: engine.node.sessionRules)
        self.loopFanout = engine.node.gateway.loops[engine.eventLoop].fanouts[LaneFormat(codec: .socketIO, compressed: engine.webSocketCompresses)]
    }

    /// The session is open: counted, registered and reachable.
    func start(transport: Transport) {
        self.transport = transport
        fanoutMember = loopFanout.register(self)
        engine.updateLaneAccess()
        SessionDriver.open(self)
    }

    /// A request from an event, or the refusal of an event that is none (the session applies the message rate).
    func receive(_ request: Result<ClientRequest, ClientRequestError>) {
        messagesIn += 1
        handleSession(.received(request))
    }

    // MARK: Outbound

    func deliver(_ delivery: Delivery) {
        send(delivery)
    }

    /// Channel messages reach the client through its loop's Socket.IO lanes.
    var fanout: FanoutMembership? {
        fanoutMember.map { FanoutMembership(group: loopFanout, member: $0) }
    }

    /// Queues a reply or delivery in the engine session's outbound queue (any thread).
    func send(_ delivery: Delivery) {
        engine.enqueue(delivery)
    }

    // MARK: Lanes

    /// Whether the lanes' frames are compressed (the session's WebSocket must match for direct writes).
    var lanesCompress: Bool { loopFanout.deflater != nil }

    /// Sets the descriptor lanes may write to directly (nil: none). On the loop.
    func setLaneDescriptor(_ descriptor: CInt?) {
        guard let fanoutMember else { return }
        loopFanout.setDirectDescriptor(descriptor, of: fanoutMember)
    }

    /// Messages the lanes wrote straight to the socket. On the loop (for tests).
    var laneWrites: Int { fanoutMember.map { loopFanout.messagesOut(of: $0) } ?? 0 }

    func finishDirectWrite(_ bytes: ByteBuffer, outcome: SocketWriter.Outcome) {
        engine.finishDirectWrite(bytes, outcome: outcome)
    }

    /// Counts messages written to the client (for the admin API's `messagesOut`).
    func recordWritten(_ count: Int) {
        messagesOut += count
    }

    // MARK: Session transport

    func encode(_ reply: SessionReply, id: RequestID?) -> Delivery {
        SocketIOCodec.encode(reply, id: id)
    }

    func endTransport(code: CloseCode, reason: String) {
        engine.end(code: code, reason: reason)
    }

    /// The session gave back its slot, subscriptions and registration: lanes stop reaching it (what is queued,
    /// a DISCONNECT included, still goes out).
    func sessionEnded() {
        if let fanoutMember { loopFanout.release(fanoutMember) }
        fanoutMember = nil
    }

    // MARK: Client connection

    func disconnect(code: CloseCode, reason: String) {
        eventLoop.execute { self.handleSession(.closeRequested(code, reason: reason)) }
    }

    func subscribedByServer(to channel: String) {
        eventLoop.execute { self.handleSession(.subscribedByServer(channel)) }
    }

    func unsubscribedByServer(from channel: String, reason: String) {
        eventLoop.execute { self.handleSession(.unsubscribedByServer(channel, reason: reason)) }
    }

    func describe() async throws -> ConnectionDescription {
        try await eventLoop.submit { [self] in
            ConnectionDescription(
                transport: transport.rawValue, id: id, ip: ip, role: session.identity.role, userId: session.identity.userId,
                connectedAt: connectedAt, channels: session.subscriptions.sorted(), messagesIn: messagesIn,
                messagesOut: messagesOut + laneWrites)
        }.get()
    }

    /// The engine session ended: the Socket.IO session ends with it (if it had not already).
    func tearDown() {
        handleSession(.transportClosed)
    }
}
