import NIOCore

/// One `Value` per event loop of a group, for state that connections of the same loop share.
struct PerEventLoop<Value: Sendable>: Sendable {
    private let values: [ObjectIdentifier: Value]
    private let make: @Sendable (any EventLoop) -> Value

    init(group: any EventLoopGroup, make: @escaping @Sendable (any EventLoop) -> Value) {
        self.make = make
        values = Dictionary(uniqueKeysWithValues: group.makeIterator().map { (ObjectIdentifier($0), make($0)) })
    }

    /// The value of `loop`, or a new one for a loop outside the group.
    subscript(loop: any EventLoop) -> Value {
        values[ObjectIdentifier(loop)] ?? make(loop)
    }
}
