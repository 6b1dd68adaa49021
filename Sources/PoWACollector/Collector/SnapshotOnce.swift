import Logging
import PostgresClient

/// `powa-collector once`: one snapshot of each active server (or of those asked for), taken
/// by the daemon's own workers (`Worker.snapshotOnce`) with the daemon's limits, at once, then
/// done. For a first test of a new server, a cron job instead of a daemon, or a snapshot before
/// a maintenance.
public struct SnapshotOnce {
    let configuration: CollectorConfiguration
    let logger: Logger

    public init(configuration: CollectorConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// One server's outcome: nil when its snapshot landed, else why not.
    public struct Outcome: Sendable {
        public let serverID: Int
        public let name: String
        public let failure: String?
        public let seconds: Double
    }

    /// Snapshots the active servers that `selectors` name (ids, aliases or `host:port`; all
    /// when empty). Throws when the server list cannot be read.
    public func run(servers selectors: [String]) async throws -> [Outcome] {
        let repository = try await PoWARepository.connect(
            to: RepositoryEndpoint(configuration, applicationName: ApplicationName.main(version: Collector.version)),
            logger: logger)
        let list: ServerList
        do {
            list = try await repository.activeServers(deadline: .now + .seconds(configuration.connectTimeout))
            repository.close()
        } catch {
            repository.close()
            throw error
        }
        let chosen = list.servers.filter { server in
            selectors.isEmpty || selectors.contains { CollectorCheck.matches(server, $0) }
        }
        // An active server whose row cannot be used is a server not snapshotted: a failure.
        let unusable = list.rejected.filter { rejected in selectors.isEmpty || selectors.contains(where: rejected.matches) }
            .map {
                Outcome(
                    serverID: $0.id, name: $0.alias ?? "?",
                    failure: "its powa_servers row cannot be used (\($0.problem))", seconds: 0)
            }
        let context = WorkerContext(
            configuration: configuration, limiter: SnapshotLimiter(permits: configuration.maxConcurrentSnapshots),
            pool: RepositoryPool(capacity: configuration.maxConcurrentSnapshots), board: WorkerBoard(), logger: logger)
        defer { context.pool.closeAll() }
        return await withTaskGroup(of: Outcome.self) { group in
            for server in chosen {
                group.addTask(executorPreference: PostgresConnection.socketExecutor) {
                    let worker = Worker(server: server, context: context, mailbox: WorkerMailbox())
                    let started = ContinuousClock.now
                    let failure = await worker.snapshotOnce()
                    return Outcome(
                        serverID: server.id, name: worker.name, failure: failure,
                        seconds: (ContinuousClock.now - started).secondsValue)
                }
            }
            var outcomes = unusable
            for await outcome in group { outcomes.append(outcome) }
            return outcomes.sorted { $0.serverID < $1.serverID }
        }
    }
}
