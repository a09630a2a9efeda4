import Logging
import ServiceLifecycle
import UnixSignals

/// Reloads the TLS certificate and key on SIGHUP (SPEC §12): new connections get the new files, open ones
/// keep theirs; a file that cannot be used is refused with a log line and the current identity stays.
struct TLSReloader: Service {
    let tls: TLSCertificates
    let logger: Logger

    func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        for await _ in hangups.cancelOnGracefulShutdown() {
            switch tls.reload() {
            case .success:
                logger.notice("TLS certificate reloaded", metadata: ["sb.tls.cert": "\(tls.certificatePath)"])
            case .failure(let error):
                logger.error("TLS certificate reload refused; the current certificate stays", metadata: ["sb.error": "\(error.description)"])
            }
        }
    }
}
