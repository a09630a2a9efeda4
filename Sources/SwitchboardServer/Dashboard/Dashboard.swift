import HTTPTypes
import Hummingbird
import NIOCore

/// The dashboard of SPEC §1 at `GET /`: one HTML page, its stylesheet and its script, all compiled into the
/// binary (no CDN, no build step, no framework), served under a strict Content-Security-Policy: nothing
/// inline, nothing from elsewhere, connections to this node only.
enum Dashboard {
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        + "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

    /// `GET /`, `/dashboard.css`, `/dashboard.js`, `/favicon.svg`.
    static let routes: [(path: String, contentType: String, body: String)] = [
        ("/", "text/html; charset=utf-8", DashboardAssets.html),
        ("/dashboard.css", "text/css; charset=utf-8", DashboardAssets.css),
        ("/dashboard.js", "text/javascript; charset=utf-8", DashboardAssets.javascript),
        ("/favicon.svg", "image/svg+xml", DashboardAssets.favicon),
    ]

    static func response(contentType: String, body: String) -> Response {
        let buffer = ByteBuffer(string: body)
        return Response(
            status: .ok,
            headers: [
                .contentType: contentType, .contentLength: "\(buffer.readableBytes)",
                HTTPField.Name("Content-Security-Policy")!: contentSecurityPolicy,
                HTTPField.Name("X-Content-Type-Options")!: "nosniff", .cacheControl: "no-cache",
                HTTPField.Name("Referrer-Policy")!: "no-referrer",
            ],
            body: .init(byteBuffer: buffer))
    }
}
