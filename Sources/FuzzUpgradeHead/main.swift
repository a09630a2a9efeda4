import NIOCore

@testable import SwitchboardServer

/// One fuzz input: the first bytes of a connection, as the plain-upgrade reader sees them, and an
/// `X-Forwarded-For` value as the client-address walk reads it. Besides "never crashes", it checks their
/// promises: the reader gives the same answer however the bytes arrive (whole, or searched in two reads) and
/// never takes more than it was given or more than its bound; the walk always names one client.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzUpgradeHead(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let bytes = ByteBuffer(bytes: UnsafeBufferPointer(start: start, count: count))
    let whole = DirectUpgradeRequest.parse(bytes.readableBytesView)
    if case .upgrade(_, let length) = whole {
        guard length <= count, length <= DirectUpgradeRequest.maxHeadBytes else { fatalError("took \(length) of \(count) bytes") }
    }
    let half = count / 2
    if case .needsMore = DirectUpgradeRequest.parse(bytes.getSlice(at: 0, length: half)?.readableBytesView ?? ByteBuffer().readableBytesView) {
        guard DirectUpgradeRequest.parse(bytes.readableBytesView, searched: half) == whole else {
            fatalError("the answer depends on how the head arrived")
        }
    }
    let text = String(decoding: UnsafeBufferPointer(start: start, count: count), as: UTF8.self)
    let addresses = ClientAddresses(trustedProxies: ["10.0.0.1"], ipv6PrefixLength: 64)
    let proxy = try? SocketAddress(ipAddress: "10.0.0.1", port: 1)
    let client = addresses.clientKey(peer: proxy, forwardedFor: text.split(separator: "\n").map(String.init))
    guard !client.isEmpty else { fatalError("no client for \(text)") }
    _ = addresses.key(ofAdminInput: text)
    return 0
}
