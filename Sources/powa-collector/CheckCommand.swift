import ArgumentParser
import Foundation
import Logging
import PoWACollector

/// `powa-collector check`: can the collector do its work? The repository and every active
/// server, reached as the daemon reaches them, each with ✓ or ✗ and a hint.
struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check the configuration, the repository and every active server, then exit.",
        discussion: """
            Connects to the repository and to each active server of powa_servers exactly as the
            daemon would (same options), and checks: the connection and authentication, the
            server's version, powa installed and compatible with the repository's, the role's
            privileges (pg_read_all_stats), each enabled snapshot source (read, one row, in a
            transaction rolled back) and, with PoWA 5, each database. It takes no snapshot and
            changes nothing. Exit status: 0 when everything is usable, 1 otherwise.

            Example: powa-collector check --config /etc/powa-collector.conf --server orders-db
            """
    )

    @OptionGroup var options: ConfigurationOptions

    @Option(help: "Check only this server: its id, alias or host:port.")
    var server: String?

    @Flag(help: "Print the report as JSON.")
    var json = false

    func run() async throws {
        let configuration = try options.load()
        var logger = Logger(label: "powa-collector")
        logger.logLevel = .error
        let report = await CollectorCheck(configuration: configuration, logger: logger).run(server: server)
        print(json ? report.json : report.text, terminator: "")
        if let server, report.repository.ok, report.servers.isEmpty {
            FileHandle.standardError.write(Data("powa-collector: no active server matches \(server)\n".utf8))
            throw ExitCode(1)
        }
        if !report.usable { throw ExitCode(1) }
    }
}
