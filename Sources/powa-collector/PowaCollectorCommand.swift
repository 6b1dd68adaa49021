import ArgumentParser
import PoWACollector

/// `powa-collector`: the PoWA remote-mode collector daemon, and the commands that talk to it.
@main
struct PowaCollectorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "powa-collector",
        abstract: "Collects the statistics of remote PostgreSQL servers into a PoWA repository.",
        version: Collector.version,
        subcommands: [DaemonCommand.self, CheckCommand.self, OnceCommand.self, StatusCommand.self, ReloadCommand.self],
        defaultSubcommand: DaemonCommand.self
    )
}
