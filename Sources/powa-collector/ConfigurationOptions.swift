import ArgumentParser
import Foundation
import PoWACollector

/// `--config`, shared by every command: the same file reaches the same repository.
struct ConfigurationOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "The configuration file to use instead of $POWA_COLLECTOR_CONFIG or the search path.",
            discussion: """
                POWA_COLLECTOR_REPOSITORY_DSN, or POWA_COLLECTOR_REPOSITORY_DSN_FILE (a file holding the \
                DSN), overrides repository.dsn; with one of them no file is needed.
                """))
    var config: String?

    /// The file and the environment, read now and again at each reload.
    var source: ConfigurationSource { ConfigurationSource(commandLinePath: config) }

    /// The configuration, or exit code 1 with one line on stderr saying what to fix.
    func load() throws -> CollectorConfiguration {
        try loadWithOrigin().0
    }

    /// The configuration and where it came from (for the daemon's first log line).
    func loadWithOrigin() throws -> (CollectorConfiguration, origin: String) {
        do {
            return try source.load()
        } catch {
            FileHandle.standardError.write(Data("powa-collector: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
