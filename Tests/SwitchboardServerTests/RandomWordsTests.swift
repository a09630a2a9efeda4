import Testing

@testable import SwitchboardServer

/// ``RandomWords`` hands out the words of each block it reads once, and reads a fresh block after.
@Suite struct RandomWordsTests {
    @Test func wordsDoNotRepeatAcrossBlocks() {
        // Four blocks of 32: a refill that handed out the old block again, or zeros, would repeat words.
        let words = (0..<128).map { _ in RandomWords.next() }
        #expect(Set(words).count == words.count)
    }
}
