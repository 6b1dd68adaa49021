import Logging
import PostgresClient
import Synchronization

/// Idle repository connections kept between snapshots (at most one per snapshot permit), so
/// that a snapshot does not pay for a new repository backend each time: fork, authentication,
/// and cold catalog and PL/pgSQL caches for `powa_take_snapshot` (measured: 52-57 ms of
/// repository CPU per snapshot on a new backend, 17-23 ms on a warm one).
///
/// A connection is lent to one task at a time, for the length of a closure (`withRepository`).
final class RepositoryPool: Sendable {
    /// A connection at rest. Sound as `Sendable` because a connection is in the pool only while
    /// no task uses it: `withRepository` removes it under the lock, and the task it is lent to is
    /// its only user until `withRepository` puts it back.
    private struct Idle: @unchecked Sendable {
        let repository: PoWARepository
        let dsn: String
    }

    private let idle = Mutex<[Idle]>([])
    private let capacity: Int

    init(capacity: Int) { self.capacity = max(1, capacity) }

    /// Lends `body` a repository session: an idle one to the endpoint's DSN, renamed as the
    /// endpoint says, or a new one. For the time of the loan its notices and diagnostics go to
    /// `logger`. Whatever `body` does (returns, throws, is cancelled), the session is then kept
    /// for the next loan when it is healthy, idle and there is room, and closed otherwise.
    func withRepository<Result>(
        _ endpoint: RepositoryEndpoint, logger: Logger, _ body: (PoWARepository) async throws -> Result
    ) async throws -> Result {
        let repository = try await lease(endpoint, logger: logger)
        defer { giveBack(repository, dsn: endpoint.dsn) }
        return try await repository.connection.withLogger(logger) { try await body(repository) }
    }

    /// An idle session to the endpoint's DSN, readied for its new user, or a new one.
    private func lease(_ endpoint: RepositoryEndpoint, logger: Logger) async throws -> PoWARepository {
        while let candidate = idle.withLock({ $0.popLast() }) {
            var repository = candidate.repository
            guard candidate.dsn == endpoint.dsn, Self.isReusable(repository) else {
                repository.close()
                continue
            }
            do {
                try await repository.connection.withLogger(logger) {
                    try await repository.rename(to: endpoint.applicationName, deadline: .now + endpoint.connectTimeout)
                }
                return repository
            } catch {
                repository.close()
            }
        }
        return try await PoWARepository.connect(to: endpoint, logger: logger)
    }

    /// Keeps the session for the next loan when it is reusable and there is room.
    private func giveBack(_ repository: PoWARepository, dsn: String) {
        guard Self.isReusable(repository) else {
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

    /// Healthy and outside any transaction: what a session must be to be lent again.
    private static func isReusable(_ repository: PoWARepository) -> Bool {
        repository.connection.isHealthy && repository.connection.transactionStatus == .idle
    }

    /// Closes every idle connection (at shutdown).
    func closeAll() {
        idle.withLock { idle in
            defer { idle = [] }
            return idle
        }.forEach { $0.repository.close() }
    }
}
