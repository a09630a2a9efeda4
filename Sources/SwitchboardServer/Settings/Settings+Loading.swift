import Foundation
import Logging
public import SwitchboardCore
import Yams

extension Settings {
    /// Names of every setting, `config` and `namespaces` included.
    public static var settingNames: [String] { declarations.map(\.name) + ["config", "namespaces"] }

    /// `SWITCHBOARD_*` variables of `environment` that name no setting (a typo, or a setting of another version):
    /// not applied, and worth telling at start rather than ignoring (an unknown config-file key is an error).
    public static func unknownEnvironmentNames(in environment: [String: String]) -> [String] {
        // `SWITCHBOARD_URL` and `SWITCHBOARD_TOKEN` are the operator commands' (`switchboard stats`, ...).
        let known = Set(declarations.map(\.environmentName) + ["SWITCHBOARD_CONFIG", "SWITCHBOARD_URL", "SWITCHBOARD_TOKEN"])
        return environment.keys.filter { $0.hasPrefix("SWITCHBOARD_") && !known.contains($0) }.sorted()
    }

    /// Settings flags as text by name, from command-line arguments `--name value` or `--name=value` (every setting,
    /// and `config`); an argument that is not one is an error naming it.
    public static func flags(fromArguments arguments: [String]) throws(SettingsError) -> [String: String] {
        let names = Set(settingNames).subtracting(["namespaces"])
        var flags: [String: String] = [:]
        var remaining = arguments[...]
        while let argument = remaining.popFirst() {
            guard argument.hasPrefix("--") else { throw SettingsError("unexpected argument '\(argument)'") }
            let flag = argument.dropFirst(2)
            let name: String
            let value: String
            if let equals = flag.firstIndex(of: "=") {
                name = String(flag[..<equals])
                value = String(flag[flag.index(after: equals)...])
            } else {
                name = String(flag)
                guard let next = remaining.popFirst() else { throw SettingsError("--\(name) needs a value") }
                value = next
            }
            guard names.contains(name) else {
                throw SettingsError("unknown option '--\(name)' (the settings are listed by --help)")
            }
            flags[name] = value
        }
        return flags
    }

    /// Builds settings from flags (by setting name, as text), the environment and the config file named by
    /// `config` in either; flags beat the environment beat the file beat defaults.
    public static func load(flags: [String: String], environment: [String: String]) throws(SettingsError) -> Settings {
        var settings = Settings()
        let configPath = flags["config"] ?? environment["SWITCHBOARD_CONFIG"]
        if let configPath { try settings.applyFile(at: configPath) }
        for declaration in declarations {
            if let value = environment[declaration.environmentName] { try declaration.apply(&settings, value) }
        }
        for declaration in declarations {
            if let value = flags[declaration.name] { try declaration.apply(&settings, value) }
        }
        try settings.validate()
        return settings
    }

    /// Applies a JSON or YAML config file: any setting by name, plus the `namespaces` table.
    mutating func applyFile(at path: String) throws(SettingsError) {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw SettingsError("cannot read config file \(path): \(error.localizedDescription)")
        }
        // YAML 1.2 is a superset of JSON, so one parser reads both.
        let document: Any?
        do {
            document = try Yams.load(yaml: text)
        } catch {
            throw SettingsError("config file \(path) is not valid JSON or YAML: \(error)")
        }
        guard let table = document as? [String: Any] else {
            throw SettingsError("config file \(path) must hold an object of settings")
        }
        for (name, value) in table where name != "namespaces" {
            guard let declaration = Self.declarations.first(where: { $0.name == name }) else {
                throw SettingsError("config file \(path): unknown setting '\(name)' (known: \(Self.settingNames.joined(separator: ", ")))")
            }
            try declaration.apply(&self, Self.text(of: value))
        }
        if table["namespaces"] != nil {
            struct NamespaceTable: Decodable { let namespaces: [Namespace] }
            do {
                namespaces = try YAMLDecoder().decode(NamespaceTable.self, from: text).namespaces
            } catch {
                throw SettingsError("config file \(path): bad namespaces table: \(error)")
            }
            guard !namespaces.isEmpty else { throw SettingsError("config file \(path): namespaces table is empty") }
        }
    }

    private static func text(of value: Any) -> String {
        switch value {
        case let list as [Any]: list.map { "\($0)" }.joined(separator: ",")
        default: "\(value)"
        }
    }
}
