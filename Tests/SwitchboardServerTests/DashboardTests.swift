import Foundation
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// `GET /` (SPEC §1): the dashboard is served from the binary, under a strict Content-Security-Policy. Its
/// behaviour in a real browser is `scripts/browser-check`'s.
@Suite struct DashboardTests {
    @Test func thePageAndItsAssetsAreServedUnderAStrictPolicy() async throws {
        try await TestNode.with { node in
            let page = try await node.request("GET", "/")
            #expect(page.status == 200 && page.body.contains("<title>Switchboard</title>"))
            let policy = page.header("Content-Security-Policy") ?? ""
            #expect(policy.contains("default-src 'none'") && policy.contains("script-src 'self'") && policy.contains("connect-src 'self'"))
            #expect(!page.body.contains("<script>") && !page.body.contains("style="), "nothing inline: the policy allows none")
            for (path, type) in [("/dashboard.js", "text/javascript"), ("/dashboard.css", "text/css"), ("/favicon.svg", "image/svg+xml")] {
                let asset = try await node.request("GET", path)
                let contentType = asset.header("Content-Type") ?? ""
                #expect(asset.status == 200 && contentType.hasPrefix(type), "\(path): \(asset.status) \(contentType)")
            }
            #expect(try await node.request("POST", "/").status == 405)
            let script = try await node.request("GET", "/dashboard.js").body
            #expect(!script.contains("innerHTML"), "dynamic content goes through textContent")
            #expect(script.contains("sessionStorage") && !script.contains("localStorage"), "the token is kept in the tab only")
        }
    }
}
