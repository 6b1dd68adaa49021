import ArgumentParser
import Foundation
import Logging
import PoWACollector

/// `powa-collector once`: one snapshot of each active server (or of the given ones), exactly
/// as the daemon takes it, then exit.
struct OnceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "once",
        abstract: "Take one snapshot of each active server (or of the given ones), then exit.",
        discussion: """
            Each snapshot is taken as the daemon takes it (same sessions, limits and timeouts),
            and a failure is recorded in powa_snapshot_metas.errors for powa-web as the daemon
            does. Prints one line per server; exit status 0 when every snapshot landed, 1
            otherwise. A running daemon is not needed, nor disturbed (powa itself refuses two
            snapshots of one server at once).

            Example: powa-collector once --config /etc/powa-collector.conf --server orders-db
            """
    )

    @OptionGroup var options: ConfigurationOptions

    @Option(name: .long, help: "A server to snapshot (id, alias or host:port); repeat for several. Default: all active.")
    var server: [String] = []

    func run() async throws {
        let configuration = try options.load()
        let levelSwitch = LogLevelSwitch(configuration.debug ? .debug : .warning)
        LoggingSystem.bootstrap { label in levelSwitch.handler(label: label, format: configuration.logFormat) }
        let logger = Logger(label: "powa-collector")
        let outcomes: [SnapshotOnce.Outcome]
        do {
            outcomes = try await SnapshotOnce(configuration: configuration, logger: logger).run(servers: server)
        } catch {
            FileHandle.standardError.write(
                Data("powa-collector: cannot read the server list from the repository: \(error)\n".utf8))
            throw ExitCode(1)
        }
        guard !outcomes.isEmpty else {
            FileHandle.standardError.write(
                Data(
                    "powa-collector: no active server\(server.isEmpty ? "" : " matches \(server.joined(separator: ", "))")\n".utf8
                ))
            throw ExitCode(1)
        }
        for outcome in outcomes {
            let seconds = (outcome.seconds * 100).rounded() / 100
            if let failure = outcome.failure {
                print("✗ \(outcome.serverID) \(outcome.name): \(failure)")
            } else {
                print("✓ \(outcome.serverID) \(outcome.name): snapshot taken in \(seconds) s")
            }
        }
        if outcomes.contains(where: { $0.failure != nil }) { throw ExitCode(1) }
    }
}
