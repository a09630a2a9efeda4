/// A channel stream's epoch (SPEC §5): a short random string chosen when the stream starts, so that a client
/// never takes a new stream's `seq` for an old one's.
public enum StreamEpoch {
    /// Eight characters of `[0-9a-z]`: 41 bits, enough that two streams of one channel never share one.
    public static func make() -> String {
        var generator = SystemRandomNumberGenerator()
        return String((0..<8).map { _ in alphabet.randomElement(using: &generator) ?? "0" })
    }

    private static let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyz")
}
