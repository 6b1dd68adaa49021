import ArgumentParser
import PoWACollector

/// `powa-collector`: the PoWA remote-mode collector daemon, and the commands that talk to it.
@main
struct PowaCollectorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "powa-collector",
        abstract: "Collects the statistics of remote PostgreSQL servers into a PoWA repository.",
        discussion: """
            Without a subcommand, runs the daemon, as the Python collector does:
              powa-collector [--config PATH] [--log-format text|json]
            See 'powa-collector run --help' for the configuration file and the signals.
            """,
        version: Collector.version,
        subcommands: [DaemonCommand.self, CheckCommand.self, OnceCommand.self, StatusCommand.self, ReloadCommand.self],
        defaultSubcommand: DaemonCommand.self
    )
}
