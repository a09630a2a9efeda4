import Foundation
import NIOCore
import SwitchboardCore

/// An admitted Socket.IO session (SPEC §9): the same session protocol, pools, limits, stats and admin API as a
/// `/ws` connection (``SessionHost``), speaking through the Socket.IO codec over its ``EngineConnection``.
///
/// `@unchecked Sendable`: the hub calls ``deliver(_:)`` from any thread, which only touches the thread-safe
/// ``Outbox`` and hops to the event loop; every other member is confined to `eventLoop`.
final class SocketIOClient: SessionHost, @unchecked Sendable {
    enum Transport: String {
        case polling = "socketio-polling"
        case webSocket = "socketio-websocket"
    }

    let node: Node
    let reservation: SlotReservation
    var session: SessionState
    private(set) var tornDown = false
    /// The engine session that carries this client (cleared when it ends).
    private var engine: EngineConnection?
    let eventLoop: any EventLoop
    private let outbox: Outbox
    private let drainScheduler: DrainScheduler
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
        self.session = SessionState(identity: admitted.identity, settings: engine.node.settings)
        self.outbox = Outbox(limit: engine.node.settings.outboundBufferBytes)
        self.drainScheduler = engine.node.drainSchedulers[engine.eventLoop]
    }

    /// The session is open: counted, registered and reachable.
    func start(transport: Transport) {
        self.transport = transport
        node.connections.add(self, userId: session.identity.userId)
        node.statistics.recordConnected(role: session.identity.role, transport: .socketio)
        startSession()
    }

    /// A request from an event, after the message rate limit.
    func receive(_ request: ClientRequest) {
        messagesIn += 1
        guard admitMessage(id: { request.id }) else { return }
        handle(.success(request))
    }

    // MARK: Outbound

    func deliver(_ delivery: Delivery) {
        send(delivery)
    }

    func send(_ delivery: Delivery) {
        apply(outbox.push(delivery)) {
            // One task per loop drains every session (and native connection) marked meanwhile.
            if let engine { drainScheduler.markDirty(engine) }
        }
    }

    /// Moves everything queued, in order, into `deliveries` (empty), for the engine to write.
    func takeQueued(into deliveries: inout [Delivery]) {
        outbox.takeAll(into: &deliveries)
    }

    var hasQueued: Bool { outbox.hasQueued }

    /// No more deliveries: the session is ending (what is queued still goes out).
    func closeOutbox() {
        outbox.seal()
    }

    /// Counts messages written to the client (for the admin API's `messagesOut`).
    func recordWritten(_ count: Int) {
        messagesOut += count
    }

    // MARK: Session host

    func encode(_ reply: SessionReply, id: RequestID?) -> Delivery {
        SocketIOCodec.encode(reply, id: id)
    }

    func terminate(code: CloseCode, reason: String) {
        engine?.end(code: code, reason: reason)
    }

    // MARK: Client connection

    func disconnect(code: CloseCode, reason: String) {
        eventLoop.execute { self.terminate(code: code, reason: reason) }
    }

    func describe() async throws -> ConnectionDescription {
        try await eventLoop.submit { [self] in
            ConnectionDescription(
                transport: transport.rawValue, id: id, ip: ip, role: session.identity.role, userId: session.identity.userId,
                connectedAt: connectedAt, channels: session.subscriptions.sorted(), messagesIn: messagesIn, messagesOut: messagesOut)
        }.get()
    }

    /// The session ended: its subscriptions, registration, counters and slot go.
    func tearDown() {
        guard !tornDown else { return }
        tornDown = true
        outbox.close()
        releaseSession()
        node.connections.remove(self, userId: session.identity.userId)
        node.statistics.recordDisconnected(role: session.identity.role, transport: .socketio)
        reservation.release()
        engine = nil
    }
}
