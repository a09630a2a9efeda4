/// Admin broadcasts for the audit trail, summarised so a feed cannot flood it (issue: 1,000 publishes a
/// second were 1,000 lines a second): per admin and namespace, the first broadcast of a quiet spell is
/// written as it is, and the ones after it are counted and written as one summary line per ``interval``.
///
/// A pure state machine: the caller writes the lines and calls ``takeDue(now:)`` about once a second.
struct BroadcastTally {
    /// Who published to which namespace (`user` for `userId` targets, `all` for global messages).
    struct Source: Hashable, Sendable {
        var userId: String
        var namespace: String
    }

    /// Messages counted since a source's last line, to be written as one summary.
    struct Summary: Equatable, Sendable {
        var source: Source
        var messages: Int
        var span: Duration
    }

    /// How often a busy source gets a summary line.
    static let interval: Duration = .seconds(1)

    private struct Window {
        var started: ContinuousClock.Instant
        var messages: Int
    }

    private var windows: [Source: Window] = [:]

    /// Counts `messages` broadcasts from `source`; returns whether this one should be written as it is
    /// (the first since the source went quiet), otherwise it waits for the next summary.
    mutating func record(_ source: Source, messages: Int = 1, now: ContinuousClock.Instant) -> Bool {
        guard windows[source] != nil else {
            windows[source] = Window(started: now, messages: 0)
            return true
        }
        windows[source]?.messages += messages
        return false
    }

    /// The summaries whose interval is over; a source with nothing counted in its last interval is forgotten,
    /// so its next broadcast is written as it is again.
    mutating func takeDue(now: ContinuousClock.Instant) -> [Summary] {
        var due: [Summary] = []
        for (source, window) in windows where now - window.started >= Self.interval {
            if window.messages == 0 {
                windows[source] = nil
            } else {
                due.append(Summary(source: source, messages: window.messages, span: now - window.started))
                windows[source] = Window(started: now, messages: 0)
            }
        }
        return due.sorted { ($0.source.userId, $0.source.namespace) < ($1.source.userId, $1.source.namespace) }
    }
}
