import NIOCore
import Testing

@testable import RedisBroker

/// Per-channel ordering of the cluster feed on one node: in order, once, gaps repaired or given up.
@Suite struct FeedSequencerTests {
    private func seqs(_ action: FeedSequencer<String>.Action) -> [UInt64] { action.deliver.map(\.seq) }

    @Test func inOrderMessagesGoOnAtOnceAndDuplicatesAreDropped() {
        var feed = FeedSequencer<String>()
        #expect(seqs(feed.received(1, epoch: "e", "a")) == [1])
        #expect(seqs(feed.received(2, epoch: "e", "b")) == [2])
        #expect(seqs(feed.received(2, epoch: "e", "b again")) == [], "a duplicate")
        #expect(seqs(feed.received(1, epoch: "e", "old")) == [])
        #expect(feed.delivered == 2 && feed.lost == 0)
    }

    @Test func aGapIsRepairedFromHistoryAndLaterMessagesWaitForIt() {
        var feed = FeedSequencer<String>(delivered: 10)
        let gap = feed.received(14, epoch: "e", "n")
        #expect(gap.deliver.isEmpty && gap.repair == 11...13, "11-13 were lost on the feed: read them from the history")
        #expect(seqs(feed.received(15, epoch: "e", "o")) == [], "waits behind the gap")
        #expect(seqs(feed.received(14, epoch: "e", "n")) == [], "already waiting: a duplicate")
        let filled = feed.repaired([(13, "m"), (11, "k"), (12, "l")])
        #expect(filled.deliver.map(\.message) == ["k", "l", "m", "n", "o"], "in seq order, each once")
        #expect(filled.repair == nil && feed.delivered == 15 && feed.lost == 0)
    }

    @Test func whatTheHistoryNoLongerHoldsIsGivenUpAndCounted() {
        var feed = FeedSequencer<String>()
        #expect(feed.received(5, epoch: "e", "e").repair == 1...4)
        let filled = feed.repaired([(4, "d")])
        #expect(seqs(filled) == [4, 5])
        #expect(feed.lost == 3, "1-3 were gone from the history too")
    }

    @Test func aSecondGapBehindTheFirstIsRepairedNext() {
        var feed = FeedSequencer<String>()
        _ = feed.received(1, epoch: "e", "a")
        #expect(feed.received(3, epoch: "e", "c").repair == 2...2)
        #expect(feed.received(6, epoch: "e", "f").repair == nil, "one repair at a time")
        let first = feed.repaired([(2, "b")])
        #expect(seqs(first) == [2, 3])
        #expect(first.repair == 4...5, "then the gap before 6")
        #expect(seqs(feed.repaired([(4, "d"), (5, "e")])) == [4, 5, 6])
    }

    @Test func tooMuchWaitingBehindAGapGivesItUp() {
        var feed = FeedSequencer<String>(maxWaiting: 3)
        #expect(feed.received(2, epoch: "e", "b").repair == 1...1)
        _ = feed.received(3, epoch: "e", "c")
        _ = feed.received(4, epoch: "e", "d")
        let overflow = feed.received(5, epoch: "e", "e")
        #expect(seqs(overflow) == [2, 3, 4, 5], "delivery never stalls behind a repair")
        #expect(feed.lost == 1)
        #expect(seqs(feed.repaired([(1, "late")])) == [], "a repair answered after giving up changes nothing")
    }

    @Test func aMessageOfANewEpochRestartsTheSequenceInsteadOfBeingTakenForADuplicate() {
        var feed = FeedSequencer<String>(delivered: 40, epoch: "old")
        #expect(feed.received(43, epoch: "old", "c").repair == 41...42)
        let restart = feed.received(1, epoch: "new", "a")
        #expect(restart.restarted && seqs(restart) == [1], "Redis lost the stream: its seq 1 is new, not a duplicate of 1")
        #expect(feed.epoch == "new" && feed.isIdle, "nothing of the old stream is waited for")
        #expect(seqs(feed.repaired([(41, "x")])) == [], "the old stream's repair no longer applies")
        #expect(seqs(feed.received(2, epoch: "new", "b")) == [2])
    }

    @Test func aSeqFarAheadIsGivenUpAtOnceNotCountedOneByOne() {
        var feed = FeedSequencer<String>(delivered: 1, epoch: "e")
        let far = UInt64(Int64.max)
        #expect(feed.received(far, epoch: "e", "z").repair == 2...(far - 1))
        let filled = feed.repaired([(2, "b")])  // a gap of 2^63 walked one by one would never return
        #expect(seqs(filled) == [2, far] && filled.lost == Int(far) - 3)
        #expect(PublishScript.parseFeedMessage(ByteBuffer(string: "18446744073709551615 c e\n{}")) == nil, "past Redis's own INCR range")
    }
}
