import ArgumentParser
import Foundation
import SwitchboardServer

/// The settings of SPEC §10 as flags. They are declared once, in `Settings.declarations`, which names, documents,
/// parses and checks each for the flag, the environment variable and the config file alike; ArgumentParser only
/// collects them here (`--help` lists them from the same table, see `Serve`).
struct SettingsOptions: ParsableArguments {
    @Argument(parsing: .allUnrecognized, help: ArgumentHelp("Settings: --name value or --name=value (listed above).", valueName: "setting"))
    var arguments: [String] = []

    /// Settings from these flags, `SWITCHBOARD_*` variables and the config file.
    func load(extra: [String: String] = [:]) throws -> Settings {
        do {
            let flags = try Settings.flags(fromArguments: arguments)
            return try Settings.load(flags: flags.merging(extra) { _, new in new }, environment: ProcessInfo.processInfo.environment)
        } catch {
            throw ValidationError(error.description)
        }
    }
}
