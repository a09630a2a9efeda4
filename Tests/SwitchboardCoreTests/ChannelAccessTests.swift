import Testing

@testable import SwitchboardCore

@Suite struct ChannelAccessTests {
    let directory = ChannelDirectory()
    let anonymous = Identity.anonymous
    let alice = Identity(userId: "alice", role: .user, tier: "free")
    let premium = Identity(userId: "pat", role: .user, tier: "premium")
    let admin = Identity(userId: "ops", role: .admin)

    private func reason(_ channel: String, _ identity: Identity) -> ChannelAccessError.Reason? {
        do {
            try directory.authorizeSubscribe(channel, by: identity)
            return nil
        } catch {
            return error.reason
        }
    }

    @Test(arguments: ["a", "market_data:AAPL", "a.b-c_d:E.F-1", String(repeating: "x", count: 128)])
    func validNames(name: String) {
        #expect(ChannelName(name) != nil)
    }

    @Test(arguments: ["", ":a", "a:", "a:b:c", "a b", "ü", String(repeating: "x", count: 129)])
    func invalidNames(name: String) {
        #expect(ChannelName(name) == nil)
    }

    @Test func rolesAreOrdered() {
        #expect(Role.anonymous < .user && Role.user < .admin && Role.admin < .superAdmin)
        #expect(Role.superAdmin.isAdmin && Role.admin.isAdmin && !Role.user.isAdmin)
    }

    @Test func defaultNamespaceRules() {
        #expect(reason("market_data:A", anonymous) == nil)
        #expect(reason("market_data", anonymous) == .badName)
        #expect(reason("trading_signals:x", anonymous) == .forbidden)
        #expect(reason("trading_signals:x", alice) == .forbidden)
        #expect(reason("trading_signals:x", premium) == nil)
        #expect(reason("trading_signals:x", admin) == nil)
        #expect(reason("system_status", anonymous) == nil)
        #expect(reason("system_status:x", anonymous) == .badName)
        #expect(reason("user:alice", alice) == nil)
        #expect(reason("user:alice", premium) == .forbidden)
        #expect(reason("user:alice", admin) == nil)
        #expect(reason("admin", alice) == .forbidden)
        #expect(reason("admin", Identity(userId: "root", role: .superAdmin)) == nil)
        #expect(reason("nope:x", admin) == .unknownNamespace)
    }
}
