#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Random 64-bit words from the system's generator, fetched 32 at a time: connection ids and Engine.IO session ids.
///
/// `SystemRandomNumberGenerator` makes one `getrandom` system call per word, so every connection of a reconnect
/// storm paid one for its id. The words are the same (the kernel's generator, through `getentropy`), taken from
/// a block read once per 32.
enum RandomWords {
    private static let pool = Mutex(Pool())

    /// The next random word.
    static func next() -> UInt64 {
        pool.withLock { $0.next() }
    }

    private struct Pool {
        /// `getentropy` gives at most 256 bytes a call.
        private var words = [UInt64](repeating: 0, count: 32)
        private var used = 32

        mutating func next() -> UInt64 {
            if used == words.count {
                refill()
                used = 0
            }
            defer { used += 1 }
            return words[used]
        }

        private mutating func refill() {
            let filled = words.withUnsafeMutableBytes { getentropy($0.baseAddress, $0.count) == 0 }
            guard !filled else { return }
            var generator = SystemRandomNumberGenerator()
            for index in words.indices { words[index] = generator.next() }
        }
    }
}
