import ArgumentParser
import Foundation
import PoWACollector

/// `powa-collector reload`: asks the running collector to reload, as powa-web's reload button
/// does (RELOAD through the repository), and reports its answer.
struct ReloadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Make the running collector re-read its configuration and the server list.",
        discussion: """
            Sends RELOAD to the collector that runs against the configuration's repository,
            through the repository (as powa-web does), and waits for its answer. The same as
            SIGHUP, from any host that reaches the repository. Exit status: 0 when it reloaded,
            1 otherwise (no answer within --timeout seconds, or the reload failed).

            Example: powa-collector reload --config /etc/powa-collector.conf
            """
    )

    @OptionGroup var options: ConfigurationOptions

    @Option(help: "Seconds to wait for the collector's answer (a reload reads the server list).")
    var timeout: Double = 30

    func run() async throws {
        let configuration = try options.load()
        let control = try await CommandSession.connect(configuration)
        defer { control.close() }
        let reply = try await CommandSession.run { try await control.ask("RELOAD", timeout: .seconds(timeout)) }
        guard let reply else { throw CommandSession.noAnswer(timeout) }
        guard reply.status == .ok else { CommandSession.fail("reload failed: \(reply.data)") }
        print("reloaded")
    }

    func validate() throws { try CommandSession.validate(timeout: timeout) }
}
