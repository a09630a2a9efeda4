import Hummingbird
import NIOCore

/// The router's request context: Hummingbird's core, and the connection's peer, from which SPEC §7's per-IP
/// rules (auth failures counted toward blocking, blocks) find the client's address on the HTTP API too.
struct APIContext: RequestContext, RemoteAddressRequestContext {
    var coreContext: CoreRequestContextStorage
    let remoteAddress: SocketAddress?

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }
}
