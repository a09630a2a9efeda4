import ArgumentParser

/// `switchboard`: the real-time broadcaster's command line.
@main
struct Switchboard: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard",
        abstract: "Real-time WebSocket broadcaster for trading platforms.",
        subcommands: [
            Serve.self, Token.self, StatsCommand.self, ChannelsCommand.self, ConnectionsCommand.self, BroadcastCommand.self,
            DisconnectCommand.self,
        ],
        defaultSubcommand: Serve.self
    )
}
