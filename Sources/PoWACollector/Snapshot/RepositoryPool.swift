import Logging
import PostgresClient
import Synchronization

/// Idle repository connections kept between snapshots (at most one per snapshot permit), so
/// that a snapshot does not pay for a new repository backend each time: fork, authentication,
/// and cold catalog and PL/pgSQL caches for `powa_take_snapshot` (measured: 52-57 ms of
/// repository CPU per snapshot on a new backend, 17-23 ms on a warm one).
///
/// A connection is used by one task at a time: checked out, used, checked in.
final class RepositoryPool: Sendable {
    /// A connection at rest. Sound as `Sendable` because a connection is in the pool only while
    /// no task uses it: `checkout` removes it under the lock, and the task that took it is its
    /// only user until `checkin` puts it back.
    private struct Idle: @unchecked Sendable {
        let repository: PoWARepository
        let dsn: String
    }

    private let idle = Mutex<[Idle]>([])
    private let capacity: Int

    init(capacity: Int) { self.capacity = max(1, capacity) }

    /// An idle connection to the endpoint's DSN, renamed as the endpoint says, or a new one.
    func checkout(_ endpoint: RepositoryEndpoint, logger: Logger) async throws -> PoWARepository {
        while let candidate = idle.withLock({ $0.popLast() }) {
            var repository = candidate.repository
            guard candidate.dsn == endpoint.dsn, repository.connection.isHealthy,
                repository.connection.transactionStatus == .idle
            else {
                repository.close()
                continue
            }
            // Its new user's name, in pg_stat_activity and in the log.
            repository.connection.logger = logger
            do {
                // Renamed, and its view of the extensions refreshed (one was installed, powa
                // upgraded?), in one round trip.
                let rows = try await repository.connection.query(
                    PinnedSettings.extensionsQuery
                        + ", (SELECT pg_catalog.set_config('application_name', $1, false)) AS renamed",
                    [endpoint.applicationName], deadline: .now + endpoint.connectTimeout
                ).rows
                repository.session.extensions = InstalledExtensions(rows: rows)
                return repository
            } catch {
                repository.close()
            }
        }
        return try await PoWARepository.connect(to: endpoint, logger: logger)
    }

    /// Keeps the connection for the next snapshot when it is healthy, idle, and there is room.
    func checkin(_ repository: PoWARepository, dsn: String) {
        guard repository.connection.isHealthy, repository.connection.transactionStatus == .idle else {
            repository.close()
            return
        }
        let kept = idle.withLock { idle -> Bool in
            guard idle.count < capacity else { return false }
            idle.append(Idle(repository: repository, dsn: dsn))
            return true
        }
        if !kept { repository.close() }
    }

    /// Closes every idle connection (at shutdown).
    func closeAll() {
        idle.withLock { idle in
            defer { idle = [] }
            return idle
        }.forEach { $0.repository.close() }
    }
}
