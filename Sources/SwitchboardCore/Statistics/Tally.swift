import Synchronization

/// An atomic integer that can be kept in collections (`Atomic` itself cannot be copied into one).
final class Tally: Sendable {
    private let value = Atomic<Int>(0)

    init() {}

    func add(_ amount: Int) { value.add(amount, ordering: .relaxed) }
    func subtract(_ amount: Int) { value.subtract(amount, ordering: .relaxed) }
    func load() -> Int { value.load(ordering: .relaxed) }
}
