import Logging
import NIOCore
import SwitchboardCore

/// The Socket.IO session inside the Engine.IO one: packets in, the message rate before CONNECT, and the CONNECT's
/// admission (SPEC §3, §7, §9).
extension EngineConnection {
    func socketIOReceived(_ data: [UInt8]) {
        // Every client packet counts toward the message rate (SPEC §7): before CONNECT here, after it in the session.
        if client == nil, !admitBeforeConnect() { return }
        perform(socketIO.received(data))
    }

    /// A client packet that asks for nothing (a WebSocket ping, an ack, another namespace's packet) counts.
    func controlReceived() {
        if let client {
            client.handleSession(.controlReceived)
        } else {
            _ = admitBeforeConnect()
        }
    }

    /// The message rate for packets before the session is admitted: over it, dropped; far over it, the end.
    func admitBeforeConnect() -> Bool {
        switch rateBeforeConnect.check() {
        case .allow:
            return true
        case .limit:
            node.statistics.recordRateLimited(.messageRate)
            return false
        case .abuse:
            node.statistics.recordRateLimited(.messageAbuse)
            finish(reason: "message rate abused before CONNECT")
            return false
        }
    }

    func perform(_ actions: some Sequence<SocketIOSession.Action>) {
        for action in actions {
            switch action {
            case .authenticate(let token, let data): authenticate(token: token, data: data)
            case .request(let request): client?.receive(request)
            case .unanswered: controlReceived()
            case .send(let packet):
                enqueue(packet)
            case .close(let reason): finish(reason: reason)
            }
        }
    }

    func authenticate(token: String?, data: JSONValue?) {
        let admission = UpgradeAdmission(node: node)
        admission.admitConnect(reservation, token: token, data: data, headers: forwardedHeaders, on: eventLoop).whenComplete { [self] result in
            guard !isFinished else {
                if case .success(let admitted) = result { admitted.reservation.release() }
                return
            }
            switch result {
            case .success(let admitted):
                wasAdmitted = true
                node.gateway.engineSessions.admitted(self)
                let client = SocketIOClient(engine: self, admitted: admitted)
                let actions = socketIO.accepted(sid: client.id)
                // The CONNECT answer first, then the session opens, then the packets that arrived while the
                // CONNECT was checked.
                if case .send(let packet)? = actions.first { enqueue(packet) }
                self.client = client
                client.start(transport: engine.transport == .websocket ? .webSocket : .polling)
                perform(actions.dropFirst())
                drainOutbox()
            case .failure(let error):
                let rejection = error as? UpgradeRejection
                let code = rejection?.code ?? .internalError
                for action in socketIO.refused(code: code.description, message: rejection?.message ?? "connect failed") {
                    switch action {
                    case .send(let packet): enqueue(packet)
                    case .close: endAfterFlush(code: .normal)
                    default: break
                    }
                }
            }
        }
    }
}
