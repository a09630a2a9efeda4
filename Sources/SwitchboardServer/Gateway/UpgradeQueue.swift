import NIOCore

/// The `/ws` upgrades of one event loop, answered a few at a time between the loop's other work.
///
/// A reconnect storm delivers upgrade requests in bursts: a client library (or a load balancer) that dials
/// hundreds at once makes a hundred of them readable in one poll of the loop. Answered where they are read, a
/// burst holds every other connection of the loop for a hundred upgrades' work (about 15 ms here) before a
/// delivery or an API answer gets its turn. Here a request read in a burst waits in line, and the loop answers
/// at most ``turn`` of them before it polls its sockets again: established connections wait for one turn at
/// most, whatever the size of the storm. The work per upgrade is the same; a lone upgrade is still answered in
/// the loop tick it is read (after that poll's other reads, where it used to be answered at once).
///
/// Event-loop confined: ``enqueue(_:)`` is called on the loop, and the work runs on it.
final class UpgradeQueue: Sendable {
    /// Upgrades answered per turn (about 1 ms of the loop's time here).
    static let turn = 8
    /// How long after a turn's own follow-up tasks (the `welcome` writes it queued) the next turn is due: NIO
    /// runs every task that is due before it polls its sockets again, so a turn due at once would never yield.
    static let pause = TimeAmount.microseconds(20)

    private let eventLoop: any EventLoop
    /// Upgrades waiting for a turn. A turn is queued exactly while this is not empty: the first arrival queues
    /// one, and a turn that leaves some queues the next.
    private let waiting: NIOLoopBoundBox<CircularBuffer<() -> Void>>

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
        waiting = NIOLoopBoundBox.makeBoxSendingValue(CircularBuffer(), eventLoop: eventLoop)
    }

    /// Queues one upgrade's work (on the loop); it runs on the loop, in arrival order.
    func enqueue(_ work: @escaping () -> Void) {
        let first = waiting.value.isEmpty
        waiting.value.append(work)
        // After the rest of this poll's reads: a burst read in one poll lines up before the first turn.
        if first { eventLoop.execute { self.runTurn() } }
    }

    private func runTurn() {
        for _ in 0..<Self.turn {
            guard let work = waiting.value.popFirst() else { break }
            work()
        }
        guard !waiting.value.isEmpty else { return }
        // Queued behind the tasks this turn queued, so the pause starts once they are done and the loop polls.
        eventLoop.execute { self.eventLoop.scheduleTask(in: Self.pause) { self.runTurn() } }
    }
}
