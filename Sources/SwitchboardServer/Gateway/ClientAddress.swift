import HTTPTypes
import NIOCore

/// How a node finds a client's IP address and the key every per-IP rule uses for it (SPEC §7): pools, connect
/// rate, auth-failure blocking, blocks, admin disconnects by IP and the HTTP connection cap.
///
/// - The address is the TCP peer; from a `trusted-proxies` peer, the `X-Forwarded-For` hops (every header
///   line, in order; each hop parsed as an address, a port or brackets removed) are walked from the nearest,
///   and the first untrusted hop is the client. An unparsable hop ends the walk: the client is the proxy that
///   forwarded it.
/// - IPv4-mapped IPv6 addresses are the IPv4 address (a node listening on `::` sees IPv4 clients that way).
/// - The key of an IPv4 address is the address; of an IPv6 address, its `ipv6-prefix-length` prefix written
///   `prefix/length` (the address itself at 128), so one host cannot dodge a limit by changing its low bits.
struct ClientAddresses: Sendable {
    /// Canonical texts of the trusted proxies' addresses.
    private let trustedProxies: Set<String>
    let ipv6PrefixLength: Int

    init(trustedProxies: [String], ipv6PrefixLength: Int) {
        self.trustedProxies = Set(trustedProxies.compactMap { Self.parse($0[...]).map(\.text) })
        self.ipv6PrefixLength = ipv6PrefixLength
    }

    /// An IP address in canonical form.
    struct Address: Equatable {
        /// 4 bytes, or 16 for IPv6 (IPv4-mapped ones are made IPv4).
        let bytes: [UInt8]

        /// Dotted IPv4, or RFC 5952's IPv6 text (NIO's, from inet_ntop).
        var text: String { Self.format(bytes) }

        fileprivate static func format(_ bytes: [UInt8]) -> String {
            (try? SocketAddress(packedIPAddress: ByteBuffer(bytes: bytes), port: 0).ipAddress ?? nil) ?? "unknown"
        }
    }

    /// The rule key of `peer`'s address, or of the client a trusted proxy forwarded (`forwardedFor`: the
    /// `X-Forwarded-For` lines in order).
    func clientKey(peer: SocketAddress?, forwardedFor: [String]) -> String {
        guard let peerAddress = peer.flatMap(Self.address(of:)) else { return "unknown" }
        guard !forwardedFor.isEmpty, trustedProxies.contains(peerAddress.text) else { return key(of: peerAddress) }
        let hops = forwardedFor.flatMap { $0.split(separator: ",") }
        var client = peerAddress
        for hop in hops.reversed() {
            guard let address = Self.parse(Self.host(ofHop: hop)) else { break }
            client = address
            guard trustedProxies.contains(address.text) else { break }
        }
        return key(of: client)
    }

    /// Whether `peer` is one of `trusted-proxies`.
    func isTrustedProxy(_ peer: SocketAddress?) -> Bool {
        peer.flatMap(Self.address(of:)).map { trustedProxies.contains($0.text) } ?? false
    }

    /// The rule key of an address an admin gave (`DELETE …/ip/{ip}`, a block), or nil when it is not one.
    func key(ofAdminInput text: String) -> String? {
        Self.parse(text[...]).map(key(of:))
    }

    /// The rule key of `address`: itself for IPv4, its prefix for IPv6.
    func key(of address: Address) -> String {
        guard address.bytes.count == 16, ipv6PrefixLength < 128 else { return address.text }
        var masked = address.bytes
        for index in 0..<16 {
            let keep = min(max(ipv6PrefixLength - index * 8, 0), 8)
            masked[index] &= keep == 8 ? 0xFF : UInt8(truncatingIfNeeded: 0xFF << (8 - keep))
        }
        return "\(Address.format(masked))/\(ipv6PrefixLength)"
    }

    /// `text` as an IP address, or nil.
    static func parse(_ text: Substring) -> Address? {
        let trimmed = String(text.drop(while: isBlank).reversed().drop(while: isBlank).reversed())
        guard !trimmed.isEmpty, trimmed.utf8.count <= 64, let address = try? SocketAddress(ipAddress: trimmed, port: 0) else {
            return nil
        }
        return Self.address(of: address)
    }

    /// The address of a socket address; IPv4-mapped IPv6 made IPv4.
    static func address(of socket: SocketAddress) -> Address? {
        // The address bytes sit at fixed offsets of `sockaddr_in` (4) and `sockaddr_in6` (8), read through
        // NIO's public `withSockAddr`.
        let (offset, count): (Int, Int)
        switch socket {
        case .v4: (offset, count) = (4, 4)
        case .v6: (offset, count) = (8, 16)
        case .unixDomainSocket: return nil
        }
        let bytes = socket.withSockAddr { pointer, size -> [UInt8] in
            guard size >= offset + count else { return [] }
            return Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(pointer) + offset, count: count))
        }
        guard bytes.count == count else { return nil }
        if count == 16, bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF {
            return Address(bytes: Array(bytes[12..<16]))
        }
        return Address(bytes: bytes)
    }

    private static func isBlank(_ character: Character) -> Bool { character == " " || character == "\t" }

    /// The address part of an `X-Forwarded-For` hop: `a.b.c.d`, `a.b.c.d:port`, `[v6]`, `[v6]:port` or `v6`.
    static func host(ofHop hop: Substring) -> Substring {
        let hop = hop.drop(while: isBlank)
        if hop.first == "[" {
            guard let close = hop.firstIndex(of: "]") else { return "" }
            return hop[hop.index(after: hop.startIndex)..<close]
        }
        let colons = hop.filter { $0 == ":" }.count
        if colons == 1, let colon = hop.firstIndex(of: ":") { return hop[..<colon] }
        return hop
    }
}

extension HTTPField.Name {
    /// `X-Forwarded-For`, whose every line counts (SPEC §7).
    static let forwardedFor = HTTPField.Name("X-Forwarded-For")!
}
