import Logging
import PostgresClient

/// One remote snapshot of one server, as the spec orders it, in one repository transaction
/// (owned by `inTransaction`: committed whole, or rolled back whatever happens):
/// 1. inside one REPEATABLE READ remote transaction (one `now()` and one view of the remote for
///    every source and the list of databases), stream each global source
///    from the remote into its staging table on the repository, a savepoint per source on both
///    sides (released on success, rolled back and reported on failure: the others go on);
/// 2. PoWA 5: for each connectable database of the remote, over a session to that database,
///    stream the per-database modules and the catalogs due into their staging tables, with the
///    remote's snapshot instant; a database that cannot be reached is reported, the others go on;
/// 3. lock the server's `powa_snapshot_metas` row (a snapshot committing elsewhere, or one that
///    landed since this worker's last, and this one is rolled back silently: see `Superseded`),
///    `powa_take_snapshot(srvid)`; 4. append the errors met to `powa_snapshot_metas.errors`;
///    check the fence (this collector still owns the server) and commit;
/// 5. only then (`runCleanups`) run each source's cleanup on the remote: a cleanup such as
///    `pg_qualstats_reset()` is not transactional, and must not lose data of a snapshot that
///    did not land.
///
/// If the remote connection is lost, the repository fails or the deadline passes, nothing lands.
struct RemoteSnapshot {
    let server: RemoteServer
    /// The worker's name, in messages and in the per-database sessions' names.
    let workerName: String
    let sources: [SnapshotSource]
    /// PoWA 5: refresh the catalogs of these databases (nil: none beyond those due).
    let catalogRefresh: CatalogRefresh?
    let deadline: ContinuousClock.Instant
    let connectTimeout: Duration
    /// The repository session's name, restored after `powa_take_snapshot` changed it.
    let applicationName: String
    /// The configuration's extra libpq keywords for this server, for the per-database sessions.
    let connectionOptions: [ConnectionConfiguration.Parameter]
    /// The statements whose texts need not be sent again; nil sends every text
    /// (`skip_known_query_texts` off).
    let knownStatements: KnownStatements?
    /// Where rows and bytes copied are counted.
    let metrics: CollectorMetrics?
    /// The membership session that must hold the server's lock when the snapshot commits (nil:
    /// no fence, `powa-collector once`).
    var fence: Int32? = nil
    /// The server's `snapts` as this worker last saw it: another means another snapshot
    /// landed since (nil: not checked).
    var expectedMark: SnapshotMark? = nil
    /// Watches the remote sessions while the snapshot waits for them (nil: not watched); see
    /// `SnapshotSlots`.
    var silence: SilenceWatch? = nil
    let logger: Logger

    /// How long the transaction may then sit idle: a collector that hangs while it holds the
    /// server's row frees it for the new owner.
    static let rowIdleLimit = Duration.seconds(15)

    /// What a snapshot that landed reports.
    struct Outcome {
        /// Errors recorded in `powa_snapshot_metas.errors`.
        var errors: [String] = []
        /// The sources whose rows landed (global, then per database).
        var landedSources = 0
        /// The per-database sources that landed, and the databases read.
        var landedDatabaseSources = 0
        var databases = 0
        /// What `powa_take_snapshot` returned (errors it met and logged on the repository).
        var takeSnapshotErrors = 0
        /// The cleanups to run once committed (placeholders expanded), by source.
        var cleanups: [(source: String, sql: String)] = []
        /// The statements staged (folded keys), to be known once committed; nil when the
        /// statements' texts were not filtered.
        var seenStatements: Set<UInt64>?
        /// Texts left out because the repository knew them, and texts restored by the repair.
        var elidedTexts = 0
        var restoredTexts = 0
        /// The folded keys of the statements whose text was left out.
        var elidedStatements: Set<UInt64> = []
        /// The statements source or the repair of its texts failed: the worker's known
        /// statements may be wrong, and are forgotten.
        var statementTextsFailed = false
        /// The server's `snapts` once this snapshot commits.
        var mark: SnapshotMark?
    }

    /// Why a snapshot was rolled back as if it had never been tried: nothing is reported to
    /// powa-web, the worker goes on (several collectors share the repository, or a snapshot
    /// was taken by someone else).
    enum Superseded: Equatable, CustomStringConvertible {
        /// Another transaction is snapshotting the server right now.
        case rowBusy
        /// A snapshot landed since this worker's last one: the schedule follows it.
        case landedElsewhere(SnapshotMark, secondsAgo: Double?)
        /// This collector no longer owns the server.
        case notOwned

        var description: String {
            switch self {
            case .rowBusy: "another snapshot of the server is being committed"
            case .landedElsewhere: "another snapshot of the server landed meanwhile"
            case .notOwned: "this collector no longer owns the server"
            }
        }
    }

    /// Why a snapshot did not land.
    enum Failure: Error, CustomStringConvertible {
        /// The remote connection broke; the worker must reconnect.
        case remoteLost(any Error)
        /// The repository failed (connection, statement, commit).
        case repository(any Error)
        /// The snapshot timeout passed while reading `source`.
        case timedOut(source: String)
        /// The remote sent nothing for `after` while reading `source`, and the suspects' lane
        /// had no room for the snapshot: given up, so that it holds no slot the others need.
        case remoteSilent(source: String, after: Duration)
        /// The task was cancelled (shutdown, worker stopped).
        case cancelled
        /// Rolled back on purpose (see `Superseded`).
        case superseded(Superseded)

        /// Whether the snapshot ran out of time.
        var isTimeout: Bool {
            switch self {
            case .timedOut, .remoteSilent: true
            default: false
            }
        }

        var description: String {
            switch self {
            case .remoteLost(let error): "lost the connection to the remote server: \(error)"
            case .repository(let error): "repository error: \(error)"
            case .timedOut(let source): "snapshot timed out while reading \(source)"
            case .remoteSilent(let source, let after):
                "the remote server sent nothing for \(after.secondsValue) s while reading \(source), and the repository's snapshot slots were needed by other servers: given up"
            case .cancelled: "snapshot interrupted"
            case .superseded(let reason): "snapshot rolled back: \(reason)"
            }
        }
    }

    /// Steps 1 to 4 on the given sessions; the caller runs the cleanups after it returns.
    func land(remote: PoWASession, repository: PoWARepository) async throws(Failure) -> Outcome {
        var outcome = Outcome()
        for source in sources {
            do {
                if let sql = try source.expandedCleanup(remote: remote.extensions) {
                    outcome.cleanups.append((source.querySource, sql))
                }
            } catch {
                outcome.errors.append(
                    "Cleanup of \(source.querySource) not run: extension \(error.name) is not installed on the remote server")
            }
        }
        let connection = repository.connection
        remote.connection.silenceWatch = silence
        defer { remote.connection.silenceWatch = nil }
        do {
            try await connection.inTransaction(deadline: deadline) {
                if let knownStatements, !knownStatements.isLoaded, sources.contains(where: \.isStatements) {
                    let layout = try await repository.statementRowLayout(deadline: deadline)
                    knownStatements.load(
                        layout: layout,
                        keys: layout == nil
                            ? [] : try await repository.knownStatementKeys(serverID: server.id, deadline: deadline))
                }
                // One snapshot of the remote for every source and the list of databases: the
                // databases the pg_database module reports are exactly those read below (a
                // database created meanwhile would otherwise send catalogs powa cannot attach).
                let remoteDatabases = try await remote.connection.inTransaction(
                    "BEGIN ISOLATION LEVEL REPEATABLE READ", deadline: deadline
                ) {
                    for source in sources {
                        try await copy(source, remote: remote, repository: repository, into: &outcome)
                    }
                    return repository.isPoWA5 ? try await listDatabases(remote.connection) : nil
                }
                // The remote transaction is over before the databases are read: it must not sit
                // idle in transaction while they are.
                if let remoteDatabases {
                    try await copyDatabases(
                        remoteDatabases, serverVersionNumber: remote.connection.serverVersionNumber,
                        repository: repository, into: &outcome)
                }
                // The fleet's guard: no two snapshots of a server at once, nor two in a period
                // when it changes hands (the row stays locked until this transaction ends).
                // The same round trip finds the left-out texts the repository lacks.
                guard
                    let row = try await repository.lockSnapshotRow(
                        serverID: server.id, idleLimit: Self.rowIdleLimit,
                        findingMissingTexts: knownStatements != nil, deadline: deadline)
                else { throw Failure.superseded(.rowBusy) }
                if let expectedMark, row.mark != expectedMark {
                    throw Failure.superseded(.landedElsewhere(row.mark, secondsAgo: row.secondsAgo))
                }
                if !row.missingTexts.isEmpty {
                    // The remote may compute the texts for a while before their first row, the
                    // repository idle meanwhile, which the row's short limit must not cut: the
                    // snapshot's own bound until the texts are in, then the row's again.
                    try await connection.limitIdleTime(to: PostgresConnection.idleLimit(until: deadline), deadline: deadline)
                    try await repairStatementTexts(row.missingTexts, remote: remote, repository: repository, into: &outcome)
                    try await connection.limitIdleTime(to: Self.rowIdleLimit, deadline: deadline)
                }
                let taking = ContinuousClock.now
                outcome.takeSnapshotErrors = try await repository.takeSnapshot(serverID: server.id, deadline: deadline)
                metrics?.takeSnapshotDuration(.now - taking)
                try await repository.appendErrors(serverID: server.id, outcome.errors, deadline: deadline)
                // The last word, the fence: this collector still owns the server (its membership
                // session holds the server's lock), else nothing lands. The session is renamed
                // back too: powa_take_snapshot renamed it 'PoWA - ...', which powa-web would take
                // for the repository's own background worker.
                let finish = try await repository.finishSnapshot(
                    serverID: server.id, applicationName: applicationName, memberPID: fence,
                    checkingTexts: outcome.seenStatements != nil, deadline: deadline)
                guard finish.owned else { throw Failure.superseded(.notOwned) }
                // A statement powa stored in this transaction with a text we left out (deleted
                // from powa_statements after the repair) rolls it all back.
                if !finish.storedWithoutText.isDisjoint(with: outcome.elidedStatements) {
                    outcome.statementTextsFailed = true
                    throw Failure.repository(
                        StatementTextsLost(
                            "statements of powa_statements were deleted during the snapshot, whose texts it left out"))
                }
                // Statements stored with an empty text before (powa keeps the first text it
                // stores): theirs is sent again next time, as for statements not known.
                outcome.seenStatements?.subtract(finish.storedWithoutText)
                outcome.mark = finish.mark
            }
        } catch let failure as Failure {
            throw failure
        } catch {
            // Both transactions are over by now: tell the sides apart by their connections.
            if !remote.connection.isHealthy { throw .remoteLost(error) }
            throw fatal(error, remote: nil, repository: connection, reading: "the snapshot") ?? .repository(error)
        }
        return outcome
    }

    /// Step 5: the cleanups, after the commit; returns the errors of those that failed.
    static func runCleanups(
        _ cleanups: [(source: String, sql: String)], remote: PostgresConnection, deadline: ContinuousClock.Instant,
        logger: Logger
    ) async -> [String] {
        var errors: [String] = []
        for cleanup in cleanups {
            do {
                try await remote.execute(cleanup.sql, deadline: deadline)
            } catch {
                logger.error("cleanup failed", metadata: ["source": "\(cleanup.source)", "error": "\(error)"])
                errors.append("Error while calling the cleanup of \(cleanup.source): \(error)")
            }
        }
        return errors
    }

    // MARK: Global sources

    private func copy(
        _ source: SnapshotSource, remote: PoWASession, repository: PoWARepository, into outcome: inout Outcome
    ) async throws(Failure) {
        guard let remoteSchema = remote.extensions.schema(of: source.schemaOwner) else {
            outcome.errors.append("Extension \(source.schemaOwner) is not installed on the remote server \(workerName)")
            return
        }
        guard let repositorySchema = repository.extensions.schema(of: source.schemaOwner) else {
            outcome.errors.append("Extension \(source.schemaOwner) is not installed on the repository server")
            return
        }
        // The statements source: the texts the repository knows are left out (any left out of
        // a statement it does not know is restored before powa_take_snapshot).
        var elider: StatementTextElider?
        if source.isStatements, let layout = knownStatements?.layout, let keys = knownStatements?.keys {
            elider = StatementTextElider(layout: layout, known: keys)
        }
        let progress = metrics.map { _ in CopyProgress() }
        do {
            let rows = try await pipe(
                from: remote.connection, source.copyOutStatement(serverID: server.id, schema: remoteSchema),
                to: repository.connection, source.copyInStatement(schema: repositorySchema), rewrite: elider?.rewrite,
                progress: progress)
            if let progress {
                metrics?.sourceCopied(server, source: source.querySource, rows: rows, bytes: progress.bytes)
            }
            if let elider {
                outcome.seenStatements = elider.seen
                outcome.elidedTexts = elider.elidedRows
                outcome.elidedStatements = elider.elided
            }
            outcome.landedSources += 1
            logger.trace("source landed", metadata: ["source": "\(source.querySource)", "rows": "\(rows)"])
        } catch {
            if let failure = fatal(
                error, remote: remote.connection, repository: repository.connection, reading: source.querySource)
            {
                throw failure
            }
            logger.error("snapshot source failed", metadata: ["source": "\(source.querySource)", "error": "\(error)"])
            outcome.errors.append("\(source.querySource): \(error)")
            if elider != nil { outcome.statementTextsFailed = true }
        }
    }

    /// Just before `powa_take_snapshot`, the server's row locked: every staged statement whose
    /// text was left out while `powa_statements` does not know it (`missing`, found by the
    /// lock's statement: if that check fails, the snapshot does) gets its text back from the
    /// remote (`StatementTextRepair`); when that fails, those statements are left out of this
    /// snapshot rather than stored without a text.
    private func repairStatementTexts(
        _ missing: [MissingText], remote: PoWASession, repository: PoWARepository, into outcome: inout Outcome
    ) async throws {
        guard let remoteSchema = remote.extensions.schema(of: "powa") else { return }
        do {
            let repair = try await repository.connection.inSavepoint("powa_texts", deadline: deadline) {
                try await StatementTextRepair(serverID: server.id, deadline: deadline, logger: logger)
                    .run(missing: missing, remote: remote.connection, remoteSchema: remoteSchema, repository: repository)
            }
            outcome.restoredTexts = repair.restored
        } catch {
            // The remote's transaction is over by now: only a broken session is lost.
            if let failure = fatal(
                error, remote: remote.connection, remoteInTransaction: false, repository: repository.connection,
                reading: "the statements' texts")
            {
                throw failure
            }
            outcome.statementTextsFailed = true
            let dropped = try await repository.dropStatementsMissingText(serverID: server.id, deadline: deadline)
            logger.error(
                "could not restore the texts of new statements: left out of this snapshot",
                metadata: ["statements": "\(dropped)", "error": "\(error)"])
            outcome.errors.append("Texts of \(dropped) new statements could not be read: \(error)")
        }
    }

    /// One COPY from a remote session into the repository (each row through `rewrite`, if
    /// given), each side in a savepoint, so that a failure undoes this source only.
    private func pipe(
        from remote: PostgresConnection, _ copyOut: String, to repository: PostgresConnection, _ copyIn: String,
        rewrite: CopyRowRewrite? = nil, progress: CopyProgress? = nil
    ) async throws -> Int {
        try await repository.inSavepoint("powa_source", deadline: deadline) {
            try await remote.inSavepoint("powa_source", deadline: deadline) {
                try await PostgresConnection.pipeCopy(
                    from: remote, copyOut, to: repository, copyIn, deadline: deadline, rewrite: rewrite,
                    progress: progress)
            }
        }
    }

    // MARK: Per-database sources and catalogs (PoWA 5)

    /// The snapshot instant and the databases to read, from the remote transaction of the
    /// global sources.
    private struct RemoteDatabases {
        /// The remote's own text of `now()` in that transaction, so every per-database row
        /// carries the `ts` of the global sources.
        let instant: String
        /// The databases that accept connections, from this role too.
        let names: [String]
    }

    private func listDatabases(_ main: PostgresConnection) async throws -> RemoteDatabases {
        let instant = try await main.query("SELECT pg_catalog.now()::text", deadline: deadline).rows[0]
            .decode(0, as: String.self)
        let names = try await main.query(
            """
            SELECT datname FROM pg_catalog.pg_database
            WHERE datallowconn AND pg_catalog.has_database_privilege(oid, 'CONNECT')
            ORDER BY datname
            """, deadline: deadline
        ).rows.compactMap { $0[0] }
        return RemoteDatabases(instant: instant, names: names)
    }

    private func copyDatabases(
        _ remote: RemoteDatabases, serverVersionNumber version: Int, repository: PoWARepository,
        into outcome: inout Outcome
    ) async throws {
        let databases = remote.names
        let instant = remote.instant
        let modules: [DatabaseSource]
        var catalogs: [DatabaseSource]
        do {
            (modules, catalogs) = try await repository.connection.inSavepoint("powa_db_sources", deadline: deadline) {
                (
                    try await repository.databaseModules(
                        serverID: server.id, serverVersionNumber: version, deadline: deadline),
                    try await repository.catalogs(
                        serverID: server.id, serverVersionNumber: version, refreshAll: catalogRefresh != nil,
                        deadline: deadline)
                )
            }
        } catch {
            // The global sources still land; the per-database ones are reported as missing.
            if let failure = fatal(
                error, remote: nil, repository: repository.connection, reading: "the database sources")
            {
                throw failure
            }
            logger.error("could not read the per-database sources", metadata: ["error": "\(error)"])
            outcome.errors.append("Error while reading the per-database sources and catalogs: \(error)")
            return
        }
        if case .databases(let names) = catalogRefresh {
            // A refresh of named databases: their catalogs only (the others stay as they are).
            catalogs = catalogs.map { catalog in
                var catalog = catalog
                catalog.excludedDatabases = Set(databases).subtracting(names)
                return catalog
            }
        }
        for database in databases {
            let work = modules.filter { $0.applies(to: database) } + catalogs.filter { $0.applies(to: database) }
            guard !work.isEmpty else { continue }
            try await copy(work, database: database, repository: repository, into: &outcome, instant: instant)
        }
    }

    /// The sources of one database, over a session of its own (opened for this snapshot and
    /// closed after it: an idle session kept on a database would block `DROP DATABASE`, and one
    /// on `template1` every `CREATE DATABASE`).
    private func copy(
        _ work: [DatabaseSource], database: String, repository: PoWARepository, into outcome: inout Outcome,
        instant: String
    ) async throws {
        let session: PoWASession
        do {
            let remaining = deadline - .now
            session = try await PoWASession.remote(
                server, database: database, applicationName: ApplicationName.workerDatabase(workerName, database),
                connectTimeout: min(connectTimeout, max(remaining, .milliseconds(1))), options: connectionOptions,
                logger: logger)
        } catch {
            if Task.isCancelled { throw Failure.cancelled }
            if ContinuousClock.now >= deadline { throw Failure.timedOut(source: "database \(database)") }
            logger.error("could not connect to a remote database", metadata: ["database": "\(database)", "error": "\(error)"])
            outcome.errors.append("Could not connect to remote database \(database): \(error)")
            return
        }
        defer { session.close() }
        outcome.databases += 1
        let connection = session.connection
        connection.silenceWatch = silence
        do {
            try await connection.inTransaction(deadline: deadline) {
                for source in work {
                    do {
                        let rows = try await pipe(
                            from: connection, source.copyOutStatement(serverID: server.id, timestamp: instant),
                            to: repository.connection, source.copyInStatement)
                        outcome.landedDatabaseSources += 1
                        logger.trace(
                            "database source landed",
                            metadata: ["database": "\(database)", "source": "\(source.name)", "rows": "\(rows)"])
                    } catch {
                        if let failure = fatal(
                            error, remote: connection, repository: repository.connection,
                            reading: "\(source.name) in database \(database)")
                        {
                            throw failure
                        }
                        logger.error(
                            "database source failed",
                            metadata: ["database": "\(database)", "source": "\(source.name)", "error": "\(error)"])
                        outcome.errors.append("\(source.name) in database \(database): \(error)")
                    }
                }
            }
        } catch let failure as Failure {
            // A database session that broke is that database's problem, not the snapshot's.
            guard case .remoteLost(let error) = failure else { throw failure }
            logger.error("lost a remote database session", metadata: ["database": "\(database)", "error": "\(error)"])
            outcome.errors.append("Lost the connection to remote database \(database): \(error)")
        } catch {
            // The database session's own transaction failed (BEGIN, COMMIT): that database's
            // problem, unless the repository or the snapshot's time is gone too.
            if let failure = fatal(error, remote: nil, repository: repository.connection, reading: "database \(database)") {
                throw failure
            }
            logger.error("remote database session failed", metadata: ["database": "\(database)", "error": "\(error)"])
            outcome.errors.append("Database \(database): \(error)")
        }
    }

    // MARK: Errors

    /// Why a snapshot that would have stored an empty text was rolled back.
    struct StatementTextsLost: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// What an error means for the snapshot: the remote or the repository is gone, the deadline
    /// passed, or the task was cancelled; nil when only this source failed (the snapshot goes on).
    /// The remote is lost when it can no longer go on with its transaction, or, for a step run
    /// outside any (`remoteInTransaction` false), when its session broke.
    private func fatal(
        _ error: any Error, remote: PostgresConnection?, remoteInTransaction: Bool = true,
        repository: PostgresConnection, reading source: String
    ) -> Failure? {
        if let failure = error as? Failure { return failure }
        if error is CancellationError || Task.isCancelled { return .cancelled }
        if let silence, silence.gaveUp { return .remoteSilent(source: source, after: silence.limit) }
        if case .timedOut = (error as? PostgresError)?.code { return .timedOut(source: source) }
        if ContinuousClock.now >= deadline { return .timedOut(source: source) }
        if !repository.canContinueTransaction { return .repository(error) }
        if let remote, !(remoteInTransaction ? remote.canContinueTransaction : remote.isHealthy) {
            return .remoteLost(error)
        }
        return nil
    }
}
