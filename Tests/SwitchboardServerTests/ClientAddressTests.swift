import Foundation
import NIOCore
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// SPEC §7's client IP (issue 34, defects 4 and 5): every `X-Forwarded-For` line, hops parsed as addresses,
/// IPv6 keyed by prefix, IPv4-mapped addresses as IPv4, and admin targets normalised the same way.
@Suite struct ClientAddressTests {
    private let proxy = try! SocketAddress(ipAddress: "10.0.0.1", port: 443)
    private let addresses = ClientAddresses(trustedProxies: ["10.0.0.1", "10.0.0.2"], ipv6PrefixLength: 64)

    @Test func everyForwardedForLineCountsAndTheNearestUntrustedHopIsTheClient() {
        // A proxy that appends its own line: the client's forged first line must not win.
        #expect(addresses.clientKey(peer: proxy, forwardedFor: ["6.6.6.6", "203.0.113.7"]) == "203.0.113.7")
        #expect(addresses.clientKey(peer: proxy, forwardedFor: ["6.6.6.6, 203.0.113.7, 10.0.0.2"]) == "203.0.113.7")
        #expect(addresses.clientKey(peer: proxy, forwardedFor: ["10.0.0.2"]) == "10.0.0.2", "all trusted: the farthest")
    }

    @Test func hopsAreParsedAsAddressesWithoutPortsOrBrackets() {
        #expect(addresses.clientKey(peer: proxy, forwardedFor: ["203.0.113.7:51234"]) == "203.0.113.7")
        #expect(addresses.clientKey(peer: proxy, forwardedFor: ["[2001:db8:1:2::7]:443"]) == "2001:db8:1:2::/64")
        #expect(addresses.clientKey(peer: proxy, forwardedFor: [" 2001:DB8:1:2::8 "]) == "2001:db8:1:2::/64")
        // An unparsable hop ends the walk: the proxy that forwarded it is the client.
        #expect(addresses.clientKey(peer: proxy, forwardedFor: ["203.0.113.7, unknown, 10.0.0.2"]) == "10.0.0.2")
        #expect(addresses.clientKey(peer: proxy, forwardedFor: ["nonsense"]) == "10.0.0.1")
    }

    @Test func anUntrustedPeersForwardedForIsIgnored() throws {
        let peer = try SocketAddress(ipAddress: "198.51.100.9", port: 1)
        #expect(addresses.clientKey(peer: peer, forwardedFor: ["203.0.113.7"]) == "198.51.100.9")
    }

    @Test func ipv6ClientsAreKeyedByTheirPrefixAndMappedAddressesAreIPv4() throws {
        let one = try SocketAddress(ipAddress: "2001:db8:1:2::1", port: 1)
        let other = try SocketAddress(ipAddress: "2001:db8:1:2:ffff:eeee:dddd:cccc", port: 1)
        let elsewhere = try SocketAddress(ipAddress: "2001:db8:1:3::1", port: 1)
        #expect(addresses.clientKey(peer: one, forwardedFor: []) == addresses.clientKey(peer: other, forwardedFor: []))
        #expect(addresses.clientKey(peer: one, forwardedFor: []) != addresses.clientKey(peer: elsewhere, forwardedFor: []))
        let mapped = try SocketAddress(ipAddress: "::ffff:192.0.2.5", port: 1)
        #expect(addresses.clientKey(peer: mapped, forwardedFor: []) == "192.0.2.5")
        let mappedProxy = try SocketAddress(ipAddress: "::ffff:10.0.0.1", port: 1)
        #expect(addresses.clientKey(peer: mappedProxy, forwardedFor: ["203.0.113.7"]) == "203.0.113.7", "a mapped proxy is trusted")
        let exact = ClientAddresses(trustedProxies: [], ipv6PrefixLength: 128)
        #expect(exact.clientKey(peer: one, forwardedFor: []) == "2001:db8:1:2::1")
        let narrow = ClientAddresses(trustedProxies: [], ipv6PrefixLength: 60)
        #expect(narrow.clientKey(peer: elsewhere, forwardedFor: []) == "2001:db8:1::/60")
    }

    @Test func adminTargetsAreValidatedAndNormalised() {
        let exact = ClientAddresses(trustedProxies: [], ipv6PrefixLength: 128)
        #expect(exact.key(ofAdminInput: "2001:DB8::1") == "2001:db8::1")
        #expect(exact.key(ofAdminInput: "2001:db8:0:0::1") == "2001:db8::1")
        #expect(exact.key(ofAdminInput: "::ffff:192.0.2.5") == "192.0.2.5")
        #expect(addresses.key(ofAdminInput: "2001:db8:1:2::99") == "2001:db8:1:2::/64")
        for bad in ["", "not-an-ip", "999.1.1.1", "1.2.3.4:80", "1.2.3.4/24", "::1%eth0x"] {
            #expect(exact.key(ofAdminInput: bad) == nil, "\(bad)")
        }
    }

    @Test func aDualStackNodeKnowsIPv4ClientsByTheirIPv4AddressInPoolsBlocksAndAdminDisconnects() async throws {
        try await TestNode.with({ $0.host = "::"; $0.maxConnectionsPerIP = 1 }) { node in
            let admin = try await node.token("ops", role: .admin)
            let first = try await node.client(localAddress: "127.0.0.41")
            let second = try #require(try await node.upgrade(localAddress: "127.0.0.41").refusal)
            #expect(second.status == 503 || second.status == 429, "the per-IP pool of 1 holds: \(second.status)")
            let byMapped = try await node.request("POST", "/api/v1/websocket/disconnect/ip/%3A%3Affff%3A127.0.0.41", token: admin)
            #expect(byMapped.json["disconnected"] as? Int == 1, "the encoded, mapped form names the same client: \(byMapped.body)")
            #expect(try await first.closeCode() == 4000)
            let blocked = try await node.request(
                "POST", "/api/v1/websocket/disconnect/ip/127.0.0.41", token: admin, body: #"{"blockSeconds":60}"#)
            #expect(blocked.status == 200)
            let refused = try #require(try await node.upgrade(localAddress: "127.0.0.41").refusal)
            #expect(refused.status == 403 && refused.errorCode == "IP_BLOCKED", "the block matches the client as it connects")
            let notAnIP = try await node.request("POST", "/api/v1/websocket/disconnect/ip/not-an-ip", token: admin)
            #expect(notAnIP.status == 400)
        }
    }

    @Test func behindAProxyTheNearestUntrustedHopOfAllLinesIsTheClient() async throws {
        try await TestNode.with({ $0.trustedProxies = ["127.0.0.1"]; $0.maxConnectionsPerIP = 1 }) { node in
            let client = try await node.upgrade(headers: [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "203.0.113.7:4444")])
            #expect(client.isUpgraded)
            // Same client, another forged first line and another port: still the same IP, so its pool of 1 is full.
            let again = try #require(try await node.upgrade(headers: [("X-Forwarded-For", "7.7.7.7, 203.0.113.7:5555")]).refusal)
            #expect(again.status != 101, "\(again.status)")
        }
    }
}
