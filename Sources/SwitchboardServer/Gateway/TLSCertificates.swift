import Logging
import NIOSSL
import Synchronization

/// The node's TLS identity (SPEC §12): the certificate chain and key of `tls-cert` / `tls-key` as an
/// `NIOSSLContext` that every new connection takes, replaced whole by ``reload()`` (SIGHUP). Open connections
/// keep the context they started with; a file that cannot be read leaves the current one in place.
public final class TLSCertificates: Sendable {
    let certificatePath: String
    let keyPath: String
    private let context: Mutex<NIOSSLContext>

    /// Loads both files; throws a message naming the setting when they cannot be used.
    public init(certificatePath: String, keyPath: String) throws(SettingsError) {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
        self.context = Mutex(try Self.load(certificatePath: certificatePath, keyPath: keyPath))
    }

    /// The context new connections use.
    var current: NIOSSLContext { context.withLock { $0 } }

    /// Reads the files again: the new context for new connections, or the reason they were refused.
    @discardableResult
    func reload() -> Result<Void, SettingsError> {
        do {
            let fresh = try Self.load(certificatePath: certificatePath, keyPath: keyPath)
            context.withLock { $0 = fresh }
            return .success(())
        } catch {
            return .failure(error)
        }
    }

    private static func load(certificatePath: String, keyPath: String) throws(SettingsError) -> NIOSSLContext {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificatePath)
        } catch {
            throw SettingsError("tls-cert \(certificatePath): not a readable PEM certificate chain (\(error))")
        }
        guard !chain.isEmpty else { throw SettingsError("tls-cert \(certificatePath): no certificate in the file") }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
        } catch {
            throw SettingsError("tls-key \(keyPath): not a readable PEM private key (\(error))")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw SettingsError("tls-cert / tls-key: the key does not match the certificate, or they cannot be used (\(error))")
        }
    }
}
