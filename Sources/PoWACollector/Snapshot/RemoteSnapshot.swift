import Logging
import PostgresClient

/// One remote snapshot of one server, as the spec orders it:
/// 1. stream each source from the remote into its staging table on the repository, in one
///    repository transaction, a savepoint per source (released on success, rolled back and
///    reported on failure: the other sources go on);
/// 2. `powa_take_snapshot(srvid)`;
/// 3. append the errors met to `powa_snapshot_metas.errors`; commit;
/// 4. only then run each source's cleanup on the remote.
///
/// The snapshot lands whole or not at all. If the remote connection is lost or the deadline
/// passes, the repository transaction is rolled back and the snapshot reported as failed.
struct RemoteSnapshot {
    let server: RemoteServer
    let sources: [SnapshotSource]
    let deadline: ContinuousClock.Instant
    /// The repository session's name, restored after `powa_take_snapshot` changed it.
    let applicationName: String
    let logger: Logger

    /// What a snapshot that landed reports.
    struct Outcome {
        /// Per-source errors recorded in `powa_snapshot_metas.errors`.
        var errors: [String] = []
        /// The sources whose rows landed.
        var landedSources = 0
        /// What `powa_take_snapshot` returned (errors it met and logged on the repository).
        var takeSnapshotErrors = 0
    }

    /// Why a snapshot did not land.
    enum Failure: Error, CustomStringConvertible {
        /// The remote connection broke; the worker must reconnect.
        case remoteLost(any Error)
        /// The repository failed (connection, statement, commit).
        case repository(any Error)
        /// The snapshot timeout passed while reading `source`.
        case timedOut(source: String)

        var description: String {
            switch self {
            case .remoteLost(let error): "lost the connection to the remote server: \(error)"
            case .repository(let error): "repository error: \(error)"
            case .timedOut(let source): "snapshot timed out while reading \(source)"
            }
        }
    }

    /// Steps 1 to 3 on the given connections; the caller runs the cleanups after it returns.
    func land(remote: PostgresConnection, repository: PoWARepository) async throws(Failure) -> Outcome {
        let connection = repository.connection
        var outcome = Outcome()
        do {
            try await connection.execute("BEGIN", deadline: deadline)
        } catch {
            throw .repository(error)
        }
        for source in sources {
            do {
                try await connection.execute("SAVEPOINT powa_source", deadline: deadline)
            } catch {
                throw .repository(error)
            }
            do {
                let rows = try await PostgresConnection.pipeCopy(
                    from: remote, source.copyOutStatement(serverID: server.id),
                    to: connection, source.copyInStatement,
                    deadline: deadline)
                try await connection.execute("RELEASE SAVEPOINT powa_source", deadline: deadline)
                outcome.landedSources += 1
                logger.trace("source landed", metadata: ["source": "\(source.querySource)", "rows": "\(rows)"])
            } catch {
                if !remote.isHealthy { throw .remoteLost(error) }
                if !connection.isHealthy { throw .repository(error) }
                if case .timedOut = (error as? PostgresError)?.code { throw .timedOut(source: source.querySource) }
                if error is CancellationError { throw .repository(error) }
                let message = "\(source.querySource): \(error)"
                logger.error("snapshot source failed", metadata: ["source": "\(source.querySource)", "error": "\(error)"])
                outcome.errors.append(message)
                do {
                    try await connection.execute(
                        "ROLLBACK TO SAVEPOINT powa_source; RELEASE SAVEPOINT powa_source", deadline: deadline)
                } catch {
                    throw .repository(error)
                }
            }
        }
        do {
            outcome.takeSnapshotErrors = try await repository.takeSnapshot(serverID: server.id, deadline: deadline)
            // powa_take_snapshot renames the session 'PoWA - ...', which powa-web would take for
            // the repository's own background worker.
            _ = try await connection.query(
                "SELECT pg_catalog.set_config('application_name', $1, false)", [applicationName], deadline: deadline)
            try await repository.appendErrors(serverID: server.id, outcome.errors, deadline: deadline)
            try await connection.execute("COMMIT", deadline: deadline)
        } catch {
            throw .repository(error)
        }
        return outcome
    }

    /// Step 4: each source's cleanup on the remote, after the commit. A failure is logged.
    func runCleanups(remote: PostgresConnection, deadline: ContinuousClock.Instant) async {
        for source in sources {
            guard let cleanup = source.queryCleanup, !cleanup.isEmpty else { continue }
            do {
                try await remote.execute(cleanup, deadline: deadline)
            } catch {
                logger.error("cleanup failed", metadata: ["source": "\(source.querySource)", "error": "\(error)"])
            }
        }
    }
}
