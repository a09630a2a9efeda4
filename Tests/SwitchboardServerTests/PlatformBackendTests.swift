import Foundation
import NIOPosix
import SwitchboardCore
import Testing

@testable import SwitchboardServer

/// What the connect proxy's answer may be (SPEC §14): every field is checked before it becomes an identity.
@Suite struct PlatformBackendTests {
    func answer(_ json: String) -> PlatformBackend.ConnectAnswer {
        PlatformBackend.identity(from: try? JSONValue.parse(Array(json.utf8)))
    }

    func isRefused(_ answer: PlatformBackend.ConnectAnswer) -> Bool {
        if case .refused = answer { return true }
        return false
    }

    @Test func aValidAnswerIsTheIdentityItNames() {
        let future = Int(Date().timeIntervalSince1970) + 3_600
        #expect(answer(#"{"userId":"u1","role":"admin","tier":"premium","expiresAt":\#(future),"channels":["room:1","room:*"]}"#)
            == .identity(Identity(userId: "u1", role: .admin, tier: "premium", expiresAt: Double(future), grants: ["room:1", "room:*"])))
        #expect(answer(#"{"userId":"u2"}"#) == .identity(Identity(userId: "u2", role: .user)))
        #expect(answer(#"{"userId":"u3","role":"anonymous"}"#) == .identity(Identity(userId: "u3", role: .user)), "a named user is at least a user")
        #expect(answer(#"{"anonymous":true}"#) == .identity(.anonymous))
    }

    @Test func whatIsNotAnIdentityIsRefused() {
        let past = Int(Date().timeIntervalSince1970) - 10
        for json in [
            "[]", "null", #"{}"#, #"{"userId":""}"#, #"{"userId":7}"#, #"{"userId":"u","role":"root"}"#, #"{"userId":"u","role":1}"#,
            #"{"userId":"u","expiresAt":\#(past)}"#, #"{"userId":"u","expiresAt":"soon"}"#, #"{"userId":"u","channels":"room:1"}"#,
            #"{"userId":"u","channels":[1]}"#, #"{"userId":"u","channels":["bad name"]}"#, #"{"userId":"\#(String(repeating: "x", count: 300))"}"#,
        ] {
            #expect(isRefused(answer(json)), "\(json)")
        }
        #expect(isRefused(PlatformBackend.identity(from: nil)), "not JSON")
    }

    /// A node dropped before it served (a start that failed after the node was built) must not need its HTTP pool
    /// shut down: async-http-client asserts, in a debug build, on a client released without it.
    @Test func aBackendThatNeverServedHoldsNoPool() {
        let backend = PlatformBackend(
            configuration: .init(connectURL: "http://127.0.0.1:9/connect", subscribeURL: nil, timeout: .seconds(1)),
            eventLoopGroup: MultiThreadedEventLoopGroup.singleton)
        #expect(backend.configuration.connectURL != nil)
    }
}
