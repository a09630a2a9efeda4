import Logging
import NIOCore
import SwitchboardCore

/// The session's one outbound queue (see ``EngineConnection``): what is queued, and the drains that move it to
/// the transport of the moment; the lanes' direct-write gate.
extension EngineConnection {
    /// Whether the session's WebSocket compresses what it is sent.
    var webSocketCompresses: Bool { webSocket?.compresses == true && loopDeflater != nil }

    /// The descriptor the client's channel lanes may write to directly (see ``LoopFanout``): the session is on
    /// its WebSocket, which allows direct writes, with frames of the lanes' kind; the client has nothing queued
    /// by the loop; the session is not ending.
    private var laneDescriptor: CInt? {
        guard !isFinished, closeDeadline == nil, engine.transport == .websocket, let client, !queuedOnLoop,
            let webSocket, webSocketCompresses == client.lanesCompress
        else { return nil }
        return webSocket.directDescriptorForSession
    }

    /// Tells the client's slot table whether lanes may write directly (whenever an input changes). On the loop;
    /// it never writes (it may run inside NIO's close).
    func updateLaneAccess() {
        client?.setLaneDescriptor(laneDescriptor)
    }

    /// The WebSocket's own direct-write state changed.
    func directAccessChanged(of socket: EngineWebSocket) {
        if socket === webSocket { updateLaneAccess() }
    }

    /// Hands what a lane's direct write left to the WebSocket (dropped if the session has left it).
    func finishDirectWrite(_ bytes: ByteBuffer, outcome: SocketWriter.Outcome) {
        webSocket?.finishDirectWrite(bytes, outcome: outcome)
    }

    /// Queues a packet for the client (any thread): behind what waits, drained by the loop's ``DrainScheduler``.
    /// Past `outbound-buffer-bytes` the session is a slow consumer (SPEC §5).
    func enqueue(_ delivery: Delivery) {
        let result = outbox.push(delivery)
        if result != .closed && eventLoop.inEventLoop { queuedOnLoop = true }
        result.apply(statistics: node.statistics) {
            drainScheduler.markDirty(self)
        } overflow: {
            self.eventLoop.execute { self.overflowed() }
        }
    }

    /// Queues one of Engine.IO's own packets (on the loop).
    func enqueue(_ packet: EnginePacket) {
        var text = ByteBuffer()
        packet.write(into: &text)
        enginePacketsQueued += 1
        enqueue(Delivery(payload: text))
    }

    /// Sends a Socket.IO packet: the CONNECT answer, a refusal before the client exists, a DISCONNECT.
    func enqueue(_ packet: SocketPacket) {
        enqueue(SocketIOCodec.delivery(packet))
    }

    /// The outbox overflowed: the client does not read (SPEC §5).
    func overflowed() {
        if let client {
            client.handleSession(.closeRequested(.slowConsumer, reason: "slow consumer: outbound buffer full"))
        } else {
            end(code: .slowConsumer, reason: "slow consumer: outbound buffer full")
        }
    }

    /// Moves what the outbox holds to the transport, when the transport can take it: a writable WebSocket, or a
    /// held poll GET. Otherwise it waits in the outbox, which bounds it (SPEC §5).
    /// - Parameter countingBytes: add the bytes written to the node's counter (the loop's ``DrainScheduler``
    ///   counts a whole run of sessions at once instead).
    /// - Returns: the bytes written (or handed to the held poll).
    @discardableResult
    func drainOutbox(countingBytes: Bool = true) -> Int {
        guard !isFinished else { return 0 }
        var bytes = 0
        if engine.transport == .websocket {
            guard let webSocket, webSocket.isWritableForSession else { return 0 }
            take()
            guard !draining.isEmpty else {
                closeIfFlushed()
                return 0
            }
            let deflater = webSocket.compresses ? loopDeflater : nil
            var compressed = CompressedBytes()
            if draining.count == 1 {
                let frame = LaneFormat.Codec.socketIO.frame(of: draining[0], deflater: deflater, counting: &compressed)
                bytes = frame.readableBytes
                webSocket.send(frame)
            } else {
                // One write for the whole drain, gathered in the loop's reused storage.
                var frames = drainScheduler.takeGatherBuffer()
                for delivery in draining {
                    frames.append(LaneFormat.Codec.socketIO.frame(of: delivery, deflater: deflater, counting: &compressed))
                }
                bytes = frames.bytes
                webSocket.send(frames.output)
                drainScheduler.returnGatherBuffer(frames)
            }
            compressed.record(in: node.statistics)
            draining.removeAll(keepingCapacity: true)
            closeIfFlushed()
        } else {
            guard engine.isPollPending, outbox.hasQueued else { return 0 }
            take()
            guard !draining.isEmpty, engine.takePoll() else {
                draining.removeAll(keepingCapacity: true)
                return 0
            }
            var packets: [EnginePacket] = []
            packets.reserveCapacity(draining.count)
            for delivery in draining {
                let packet = delivery.isMessage ? SocketIOCodec.messagePacket(of: delivery) : delivery.payload
                guard let decoded = try? EnginePacket.decode(text: packet.readableBytesView) else { continue }
                bytes += packet.readableBytes
                packets.append(decoded)
            }
            draining.removeAll(keepingCapacity: true)
            perform([.answerPoll(packets)])
        }
        if countingBytes { node.statistics.recordBytesOut(bytes) }
        return bytes
    }

    /// Takes everything queued into ``draining``, counting the Socket.IO packets among it as written.
    func take() {
        outbox.takeAll(into: &draining)
        queuedOnLoop = false
        client?.recordWritten(max(0, draining.count - enginePacketsQueued))
        enginePacketsQueued = 0
    }
}
