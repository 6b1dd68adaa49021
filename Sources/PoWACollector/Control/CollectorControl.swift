import Glibc
import Logging
import PostgresClient

/// The control protocol seen from the other end, as powa-web speaks it: `powa-collector status`
/// and `powa-collector reload` ask the collector that runs against a repository, through the
/// repository itself (LISTEN on a channel of their own, NOTIFY `powa_collector`).
public struct CollectorControl {
    let repository: PoWARepository
    private let channel: String

    /// Connects to the repository of `configuration`.
    public static func connect(_ configuration: CollectorConfiguration, logger: Logger) async throws -> CollectorControl {
        let repository = try await PoWARepository.connect(
            to: RepositoryEndpoint(configuration, applicationName: ApplicationName.command), logger: logger)
        // Another host's command may run at the same time: a channel of this run's own.
        return CollectorControl(
            repository: repository, channel: "powa_collector_command_\(getpid())_\(UInt32.random(in: 0...UInt32.max))")
    }

    public func close() { repository.close() }

    /// Sends `command` with `arguments` and returns the collector's answer, nil when none came
    /// within `timeout`.
    public func ask(_ command: String, _ arguments: [String] = [], timeout: Duration) async throws -> ControlReply? {
        let deadline = ContinuousClock.now + timeout
        try await repository.listen(channel, deadline: deadline)
        let payload = ([command, channel] + arguments).joined(separator: " ")
        try await repository.notify(channel: ControlChannel.channel, payload: payload, deadline: deadline)
        while let notification = try await repository.connection.nextNotification(deadline: deadline) {
            guard notification.channel == channel else { continue }
            let reply = ControlReply(payload: notification.payload)
            // (An answer to an earlier question of this session, come late, is not this one's.)
            guard reply.command == command else { continue }
            return reply
        }
        return nil
    }

    /// The servers as `powa_servers` names them: id, `host:port` and alias.
    public func serverNames(deadline: ContinuousClock.Instant) async throws -> [Int: (address: String, alias: String?)] {
        try await repository.serverNames(deadline: deadline)
    }
}
