import NIOCore

/// The `/ws` upgrades of one event loop, answered a few at a time between the loop's other work.
///
/// A reconnect storm delivers upgrade requests in bursts: a client library (or a load balancer) that dials
/// hundreds at once makes a hundred of them readable in one poll of the loop. Answered where they are read, a
/// burst holds every other connection of the loop for a hundred upgrades' work (about 15 ms here) before a
/// delivery or an API answer gets its turn. Here a request read in a burst waits in line, and the loop answers
/// at most ``turn`` of them before it polls its sockets again: established connections wait for one turn at
/// most, whatever the size of the storm. The work per upgrade is the same; a lone upgrade is answered in the
/// same loop tick it is read, as before.
///
/// Event-loop confined: ``enqueue(_:)`` is called on the loop, and the work runs on it.
final class UpgradeQueue: Sendable {
    /// Upgrades answered per turn (about 1 ms of the loop's time here).
    static let turn = 8
    /// How long after a turn's own follow-up tasks (the `welcome` writes it queued) the next turn is due: NIO
    /// runs every task that is due before it polls its sockets again, so a turn due at once would never yield.
    static let pause = TimeAmount.microseconds(20)

    private struct Line {
        var waiting = CircularBuffer<() -> Void>()
        var scheduled = false
    }

    private let eventLoop: any EventLoop
    private let line: NIOLoopBoundBox<Line>

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
        line = NIOLoopBoundBox.makeBoxSendingValue(Line(), eventLoop: eventLoop)
    }

    /// Queues one upgrade's work (on the loop); it runs on the loop, in arrival order.
    func enqueue(_ work: @escaping () -> Void) {
        line.value.waiting.append(work)
        guard !line.value.scheduled else { return }
        line.value.scheduled = true
        // After the rest of this poll's reads: a burst read in one poll lines up before the first turn.
        eventLoop.execute { self.runTurn() }
    }

    private func runTurn() {
        for _ in 0..<Self.turn {
            guard let work = line.value.waiting.popFirst() else { break }
            work()
        }
        if line.value.waiting.isEmpty {
            line.value.scheduled = false
        } else {
            // Queued behind the tasks this turn queued, so the pause starts once they are done and the loop polls.
            eventLoop.execute { self.eventLoop.scheduleTask(in: Self.pause) { self.runTurn() } }
        }
    }
}
