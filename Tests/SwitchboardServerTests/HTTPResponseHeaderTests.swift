import Foundation
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// What every HTTP response carries besides its body: `Date` (RFC 9110 §6.6.1) and `Server`, for routes and
/// for the router's own 404 alike.
@Suite struct HTTPResponseHeaderTests {
    @Test func dateIsIMFFixdateInUTC() {
        #expect(HTTPDate.format(784_111_777) == "Sun, 06 Nov 1994 08:49:37 GMT")  // RFC 9110's example
        #expect(HTTPDate.format(0) == "Thu, 01 Jan 1970 00:00:00 GMT")
        #expect(HTTPDate.format(1_796_242_415) == "Wed, 02 Dec 2026 20:13:35 GMT")  // checked with Python's strftime
    }

    /// A client may end its side once the request is sent (a TCP FIN) and still read the answer: the server
    /// allows half-closure until a connection turns out to be a WebSocket.
    @Test func aClientThatHalfClosesAfterItsRequestStillGetsTheAnswer() async throws {
        try await TestNode.with { node in
            let socket = try BlockingSocket(port: node.port)
            try socket.send("GET /api/v1/websocket/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            socket.shutdownWrite()
            let response = try await onOwnThread { try socket.receive(until: "\"status\"", timeout: .seconds(5)) }
            #expect(response.hasPrefix("HTTP/1.1 200"), "answered after the client's FIN: \(response)")
        }
    }

    @Test func everyResponseCarriesDateAndServer() async throws {
        try await TestNode.with { node in
            for path in ["/api/v1/websocket/health", "/no/such/route"] {
                let response = try await node.request("GET", path)
                let date = try #require(response.header("Date"), "\(path): no Date header")
                let parser = DateFormatter()
                parser.locale = Locale(identifier: "en_US_POSIX")
                parser.timeZone = TimeZone(identifier: "GMT")
                parser.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
                let sent = try #require(parser.date(from: date), "\(path): Date is not IMF-fixdate: \(date)")
                #expect(abs(sent.timeIntervalSinceNow) < 5)
                #expect(response.header("Server") == "switchboard")
            }
        }
    }
}
