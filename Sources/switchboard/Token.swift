import ArgumentParser
import Foundation
import SwitchboardCore
import SwitchboardServer

/// `switchboard token`: mint a JWT with the configured secret.
struct Token: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a JWT signed with the configured HS256 secret (--jwt-secret, or any setting of `serve`).")

    @OptionGroup var options: SettingsOptions
    @Option(help: "User id (the token's sub).") var sub: String
    @Option(help: "Role: user, admin or super_admin.") var role: String = "user"
    @Option(help: "Tier claim, e.g. free, premium, enterprise.") var tier: String?
    @Option(help: "Channels granted beyond the namespace rules, comma-separated; namespace:* grants every topic (SPEC §14).")
    var channels: String?
    @Option(help: "Time to live, e.g. 30s, 15m, 1h, 7d (default: no expiry).") var ttl: String?

    func run() async throws {
        let settings = try options.load()
        guard let secret = settings.jwtSecret else {
            throw ValidationError("no jwt-secret: pass --jwt-secret or set SWITCHBOARD_JWT_SECRET")
        }
        guard let role = Role(rawValue: role), role != .anonymous else {
            throw ValidationError("--role must be user, admin or super_admin")
        }
        let lifetime = try ttl.map(Self.parseDuration)
        let granted = channels.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        if let granted, let refusal = Identity.refusal(ofGrants: granted) { throw ValidationError("--channels: \(refusal)") }
        print(try await TokenIssuer(secret: secret).token(userId: sub, role: role, tier: tier, channels: granted, ttl: lifetime))
    }

    static func parseDuration(_ text: String) throws -> Duration {
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        guard let unit = text.last, let scale = units[unit], let count = Int64(text.dropLast()), count > 0 else {
            throw ValidationError("--ttl must look like 30s, 15m, 1h or 7d")
        }
        return .seconds(count * scale)
    }
}
