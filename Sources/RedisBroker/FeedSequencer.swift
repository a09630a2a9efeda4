/// One channel's feed on one node, as a pure state machine: messages arrive from Redis pub/sub (at most
/// once, in order per connection, but a cut connection loses some); it hands them on strictly in `seq`
/// order, each once, and says when a gap must be repaired from the channel's history stream (SPEC §8).
///
/// - A `seq` at or below the last one handed on, or already waiting, is a duplicate: dropped.
/// - The next `seq` is handed on at once, with whatever waited right behind it.
/// - A higher one opens a gap: it waits (with any later ones, bounded) while the missing range is read from
///   the history stream; ``repaired(_:)`` fills in what was found, and what is still missing is given up
///   (counted in ``lost``) so delivery never stalls.
/// - A message of another epoch (SPEC §5: the channel's stream restarted in Redis, which lost or expired its
///   keys) starts the sequence again from that message: nothing of the old stream is waited for, and no
///   message of the new one is taken for a duplicate.
public struct FeedSequencer<Message> {
    /// What to do after an event: hand `deliver` on in order, then, if set, read `repair` from the history.
    public struct Action {
        public var deliver: [(seq: UInt64, message: Message)] = []
        public var repair: ClosedRange<UInt64>?
        /// Of a repaired gap: messages found in the history, and messages given up.
        public var repaired = 0
        public var lost = 0
        /// The stream restarted: a message of a new epoch arrived.
        public var restarted = false
    }

    /// The last `seq` handed on (0: none yet).
    public private(set) var delivered: UInt64
    /// The epoch of the stream being followed (nil: not known yet; the first message's is taken).
    public private(set) var epoch: String?
    /// The range being repaired, if any.
    public private(set) var repairing: ClosedRange<UInt64>?
    /// Messages given up because neither the feed nor the history had them.
    public private(set) var lost: UInt64 = 0
    /// Most messages held behind a gap; past it the gap is given up at once.
    public let maxWaiting: Int
    /// Messages past a gap, by seq.
    private var waiting: [UInt64: Message] = [:]

    /// - Parameter delivered: the last `seq` already handed on (from the history or last value at start).
    public init(delivered: UInt64 = 0, epoch: String? = nil, maxWaiting: Int = 10_000) {
        self.delivered = delivered
        self.epoch = epoch
        self.maxWaiting = maxWaiting
    }

    /// Nothing waits and no repair runs: forgetting this sequencer loses nothing.
    public var isIdle: Bool { waiting.isEmpty && repairing == nil }

    /// A message from the feed, of the stream `epoch`.
    public mutating func received(_ seq: UInt64, epoch: String, _ message: Message) -> Action {
        if self.epoch == nil { self.epoch = epoch }
        guard epoch == self.epoch else {
            let lost = self.lost
            self = FeedSequencer(delivered: max(seq, 1) - 1, epoch: epoch, maxWaiting: maxWaiting)
            self.lost = lost
            var action = received(seq, epoch: epoch, message)
            action.restarted = true
            return action
        }
        guard seq > delivered, waiting[seq] == nil else { return Action() }
        waiting[seq] = message
        guard repairing == nil else {
            return waiting.count > maxWaiting ? giveUpRepair() : Action()
        }
        return advance()
    }

    /// What the history stream held of the range being repaired (any subset, any order); the rest of the
    /// range is given up.
    public mutating func repaired(_ found: [(seq: UInt64, message: Message)]) -> Action {
        guard let range = repairing else { return Action() }
        repairing = nil
        for (seq, message) in found where range.contains(seq) && seq > delivered && waiting[seq] == nil {
            waiting[seq] = message
        }
        // Walks what was found, not the range: a `seq` from Redis may be far ahead (a corrupt or hostile reply),
        // and counting a gap of 2^60 one by one would stall the feed.
        var action = Action()
        for seq in waiting.keys.filter({ range.contains($0) }).sorted() {
            guard let message = waiting.removeValue(forKey: seq) else { continue }
            action.deliver.append((seq, message))
            action.repaired += 1
        }
        let given = Self.count(of: range) - UInt64(action.repaired)
        action.lost = given > Int.max ? Int.max : Int(given)
        lost = lost.addingReportingOverflow(given).overflow ? UInt64.max : lost + given
        delivered = range.upperBound
        let next = advance()
        action.deliver += next.deliver
        action.repair = next.repair
        return action
    }

    /// The channel's `seq` in Redis is `top` (read after a reconnect): messages up to it that never arrived
    /// (the last ones before the feed was cut, which no later message reveals) are repaired now.
    public mutating func caughtUp(to top: UInt64) -> Action {
        guard repairing == nil, top > delivered else { return Action() }
        let gap = (delivered + 1)...top
        repairing = gap
        return Action(repair: gap)
    }

    /// This node delivered `seq` itself (published while Redis was out of reach): the feed continues after it.
    public mutating func skip(to seq: UInt64) {
        guard seq > delivered else { return }
        delivered = seq
        waiting = waiting.filter { $0.key > seq }
    }

    /// Gives up the range being repaired (the history read failed, or too much waits behind the gap).
    public mutating func giveUpRepair() -> Action {
        repaired([])
    }

    /// How many seqs `range` holds (a range of every UInt64 saturates).
    private static func count(of range: ClosedRange<UInt64>) -> UInt64 {
        let (width, overflow) = (range.upperBound - range.lowerBound).addingReportingOverflow(1)
        return overflow ? UInt64.max : width
    }

    /// Hands on what waits right after `delivered`; if messages still wait behind a gap, starts its repair.
    private mutating func advance() -> Action {
        var action = Action()
        while delivered < UInt64.max, let message = waiting.removeValue(forKey: delivered + 1) {
            delivered += 1
            action.deliver.append((delivered, message))
        }
        if let first = waiting.keys.min() {
            let gap = (delivered + 1)...(first - 1)
            repairing = gap
            action.repair = gap
        }
        return action
    }
}

extension FeedSequencer: Sendable where Message: Sendable {}
extension FeedSequencer.Action: Sendable where Message: Sendable {}
