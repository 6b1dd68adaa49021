import ArgumentParser
import Foundation
import Logging
import PoWACollector

/// `powa-collector status`: what the running collector says of its workers, as powa-web asks
/// it (WORKERS_STATUS through the repository), as a table.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the status of the running collector's workers.",
        discussion: """
            Asks the collector that runs against the configuration's repository, through the
            repository (as powa-web does), and prints one line per server. The role of the DSN
            must be allowed to command the collector (pg_signal_backend, or a PoWA 5 admin role).
            Exit status: 0 when every server is running, 2 when one is not, 1 when no collector
            answered within --timeout seconds.

            Example: powa-collector status --config /etc/powa-collector.conf
            """
    )

    @OptionGroup var options: ConfigurationOptions

    @Option(help: "Seconds to wait for the collector's answer.")
    var timeout: Double = 5

    func run() async throws {
        let configuration = try options.load()
        let control = try await CommandSession.connect(configuration)
        defer { control.close() }
        let reply = try await CommandSession.run {
            try await control.ask("WORKERS_STATUS", timeout: .seconds(timeout))
        }
        guard let reply else { throw CommandSession.noAnswer(timeout) }
        let names = try await CommandSession.run { try await control.serverNames(deadline: .now + .seconds(timeout)) }
        var object: [String: String] = [:]
        if reply.status == .ko {
            // Too many servers for one answer (NOTIFY payloads stay under 8000 bytes): one
            // question per server.
            for id in names.keys.sorted() {
                let one = try await CommandSession.run {
                    try await control.ask("WORKERS_STATUS", ["\(id)"], timeout: .seconds(timeout))
                }
                guard let one else { throw CommandSession.noAnswer(timeout) }
                object.merge(Self.statuses(one) ?? [:]) { $1 }
            }
        } else if let statuses = Self.statuses(reply) {
            object = statuses
        } else {
            CommandSession.fail("the collector answered: \(reply.status.rawValue) \(reply.data)")
        }
        let statuses = object.compactMap { key, value in Int(key).map { ($0, value) } }.sorted { $0.0 < $1.0 }
        var rows = [["srvid", "server", "status"]]
        for (id, status) in statuses {
            let name = names[id].map { $0.alias.map { alias in "\(alias) (\(names[id]!.address))" } ?? $0.address } ?? "?"
            rows.append(["\(id)", name, status])
        }
        for line in TextTable.lines(rows) { print(line) }
        let running = statuses.filter { $0.1 == "running" }.count
        print("\(statuses.count) server\(statuses.count == 1 ? "" : "s"): \(running) running")
        if running != statuses.count { throw ExitCode(2) }
    }

    /// The statuses of a WORKERS_STATUS answer, by server id.
    static func statuses(_ reply: ControlReply) -> [String: String]? {
        guard reply.status == .ok else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(reply.data.utf8)) as? [String: String]
    }

    func validate() throws { try CommandSession.validate(timeout: timeout) }
}
