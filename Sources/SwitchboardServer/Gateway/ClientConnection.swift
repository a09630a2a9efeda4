import Foundation
import SwitchboardCore

/// An open client connection of any protocol (a native `/ws` connection or a Socket.IO session), as the
/// node's registry, the admin API and blocks see it.
public protocol ClientConnection: Subscriber {
    /// The connection id (the native `welcome`'s `connectionId`, the Socket.IO CONNECT's `sid`).
    var id: String { get }
    /// The client's IP address.
    var ip: String { get }
    /// Ends the connection from any thread for `code` (an admin disconnect, a block, shutdown).
    func disconnect(code: CloseCode, reason: String)
    /// The platform's backend subscribed the connection's user to `channel` (SPEC §14), from any thread.
    func subscribedByServer(to channel: String)
    /// The platform's backend removed the connection's user from `channel` (SPEC §14), from any thread.
    func unsubscribedByServer(from channel: String, reason: String)
    /// What the admin API shows of the connection, read on its event loop.
    func describe() async throws -> ConnectionDescription
}

/// What the admin API shows of a connection (SPEC §6).
public struct ConnectionDescription: Sendable {
    /// The wire protocol: `websocket` (native `/ws`), `socketio-websocket` or `socketio-polling`.
    let transport: String
    let id: String
    let ip: String
    let role: Role
    let userId: String?
    let connectedAt: Date
    let channels: [String]
    let messagesIn: Int
    let messagesOut: Int
}
