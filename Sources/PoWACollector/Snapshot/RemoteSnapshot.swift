import Logging
import PostgresClient

/// One remote snapshot of one server, as the spec orders it, in one repository transaction
/// (owned by `inTransaction`: committed whole, or rolled back whatever happens):
/// 1. inside one REPEATABLE READ remote transaction (one `now()` and one view of the remote for
///    every source and the list of databases), stream each global source
///    from the remote into its staging table on the repository, a savepoint per source on both
///    sides (released on success, rolled back and reported on failure: the others go on);
/// 2. PoWA 5: the per-database modules and catalogs (`DatabaseSnapshot`);
/// 3. lock the server's `powa_snapshot_metas` row (a snapshot committing elsewhere, or one that
///    landed since this worker's last, and this one is rolled back silently: see `Superseded`),
///    `powa_take_snapshot(srvid)`; 4. append the errors met to `powa_snapshot_metas.errors`;
///    check the fence (this collector still owns the server) and commit;
/// 5. only then (`runCleanups`) run each source's cleanup on the remote: a cleanup such as
///    `pg_qualstats_reset()` is not transactional, and must not lose data of a snapshot that
///    did not land.
///
/// If the remote connection is lost, the repository fails or the deadline passes, nothing lands,
/// and the `SnapshotError` says which side failed at which step.
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
    /// Where the errors met are written.
    let report: SnapshotReport
    /// Errors to show with this snapshot's own (spooled snapshots that were dropped).
    var notices: [String] = []
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
        /// The statements staged, to be known once committed; nil when the
        /// statements' texts were not filtered.
        var seenStatements: Set<StatementKey>?
        /// Texts left out because the repository knew them, and texts restored by the repair.
        var elidedTexts = 0
        var restoredTexts = 0
        /// The statements whose text was left out.
        var elidedStatements: Set<StatementKey> = []
        /// The statements source or the repair of its texts failed: the worker's known
        /// statements may be wrong, and are forgotten.
        var statementTextsFailed = false
        /// The server's `snapts` once this snapshot commits.
        var mark: SnapshotMark?
        /// PoWA 5: the per-database sources a spooled snapshot would read next.
        var databaseSources: DatabaseSources?
    }

    /// Steps 1 to 4 on the given sessions; the caller runs the cleanups after it returns.
    func land(remote: PoWASession, repository: PoWARepository) async throws(SnapshotError) -> Outcome {
        var outcome = outcomeBeginning(remote: remote)
        let connection = repository.connection
        remote.connection.silenceWatch = silence
        defer { remote.connection.silenceWatch = nil }
        // The repository's transaction: its BEGIN, then the body (whose errors are tagged
        // already), then its COMMIT.
        var committing = false
        do {
            try await connection.inTransaction(deadline: deadline) {
                if let knownStatements, !knownStatements.isLoaded, sources.contains(where: \.isStatements) {
                    try await loadKnownStatements(knownStatements, remote: remote, repository: repository)
                }
                let remoteDatabases = try await copyGlobalSources(
                    remote: remote, to: .repository(repository), readingDatabases: repository.isPoWA5, into: &outcome)
                // The remote transaction is over before the databases are read: it must not sit
                // idle in transaction while they are.
                if let remoteDatabases {
                    try await DatabaseSnapshot(snapshot: self, databases: remoteDatabases, main: remote)
                        .copy(
                            serverVersionNumber: remote.connection.serverVersionNumber, to: .repository(repository),
                            into: &outcome)
                }
                try await step(.repository, .commit, remote: remote.connection, repository: connection) {
                    try await commitSteps(remote: remote, repository: repository, into: &outcome)
                }
                committing = true
            }
        } catch {
            // Tagged already, or the repository's own BEGIN or COMMIT.
            let step: SnapshotError.Step = committing ? .commit : .begin
            throw SnapshotError.classify(
                error, side: .repository, step: step, remote: remote.connection, repository: connection,
                deadline: deadline, silence: silence)
                ?? SnapshotError(.repositoryFailed, side: .repository, step: step, underlying: error)
        }
        return outcome
    }

    /// The statements the repository knows, and whether the remote can leave out their texts
    /// itself (`KnownTextsOnRemote`): its source's columns are the staging table's.
    private func loadKnownStatements(
        _ knownStatements: KnownStatements, remote: PoWASession, repository: PoWARepository
    ) async throws(SnapshotError) {
        let staging = try await step(.repository, .begin, remote: remote.connection, repository: repository.connection) {
            try await repository.statementStagingColumns(deadline: deadline)
        }
        let layout = StatementRowLayout(columns: staging)
        let keys =
            layout == nil
            ? []
            : try await step(.repository, .begin, remote: remote.connection, repository: repository.connection) {
                try await repository.knownStatementKeys(serverID: server.id, deadline: deadline)
            }
        var onRemote: KnownTextsOnRemote?
        if layout != nil, let schema = remote.extensions.byName["powa"]?.schema {
            let columns = try await step(.remote, .begin, remote: remote.connection, repository: repository.connection) {
                try await KnownTextsOnRemote.remoteColumns(on: remote.connection, schema: schema, deadline: deadline)
            }
            onRemote = KnownTextsOnRemote(remote: columns, staging: staging)
            if onRemote == nil {
                logger.info(
                    "the remote's statements source differs from the repository's staging table: known texts are left out by the collector",
                    metadata: ["remote": "\(columns)", "staging": "\(staging.dropFirst())"])
            }
        }
        knownStatements.load(layout: layout, keys: keys, onRemote: onRemote)
    }

    /// Steps 1 and 2 into a spool file rather than the repository, which cannot take them now,
    /// with the sources `basis` says it last had (see `SnapshotSpool`); the caller finishes
    /// the file, then runs the cleanups.
    func spool(remote: PoWASession, into writer: SpoolWriter, basis: SpoolBasis) async throws(SnapshotError) -> Outcome {
        var outcome = outcomeBeginning(remote: remote)
        let remoteDatabases = try await copyGlobalSources(
            remote: remote, to: .spool(writer), readingDatabases: basis.isPoWA5, into: &outcome)
        if let remoteDatabases {
            try await DatabaseSnapshot(snapshot: self, databases: remoteDatabases, main: remote)
                .copy(
                    serverVersionNumber: remote.connection.serverVersionNumber, to: .spool(writer),
                    sources: basis.databaseSources, into: &outcome)
        }
        return outcome
    }

    /// What a snapshot begins with: the notices to show with it, and the cleanups to run once
    /// it is safe (landed, or spooled), or why one cannot run.
    private func outcomeBeginning(remote: PoWASession) -> Outcome {
        var outcome = Outcome()
        outcome.errors = notices
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
        return outcome
    }

    /// Step 1: every global source, in one REPEATABLE READ transaction of the remote (one
    /// `now()` and one view of the remote for every source and the list of databases: the
    /// databases the pg_database module reports are exactly those read next, as a database
    /// created meanwhile would otherwise send catalogs powa cannot attach). Returns the
    /// databases to read (PoWA 5).
    private func copyGlobalSources(
        remote: PoWASession, to destination: SnapshotDestination, readingDatabases: Bool, into outcome: inout Outcome
    ) async throws(SnapshotError) -> RemoteDatabases? {
        var reading = false
        do {
            return try await remote.connection.inTransaction("BEGIN ISOLATION LEVEL REPEATABLE READ", deadline: deadline) {
                reading = true
                for source in sources {
                    try await copy(source, remote: remote, to: destination, into: &outcome)
                }
                guard readingDatabases else { return nil }
                return try await step(.remote, .databaseSources, remote: remote.connection, repository: destination.connection) {
                    try await listDatabases(remote.connection)
                }
            }
        } catch let error as SnapshotError {
            throw error
        } catch {
            // The remote's BEGIN or COMMIT.
            throw SnapshotError.classify(
                error, side: .remote, step: reading ? .commit : .begin, remote: remote.connection,
                remoteInTransaction: false, repository: destination.connection, deadline: deadline, silence: silence)
                ?? SnapshotError(.remoteFailed, side: .remote, step: reading ? .commit : .begin, underlying: error)
        }
    }

    /// Steps 3 and 4, the server's row locked: the texts the repository lacks,
    /// `powa_take_snapshot`, the errors met, and the fence.
    func commitSteps(remote: PoWASession?, repository: PoWARepository, into outcome: inout Outcome) async throws {
        let connection = repository.connection
        // The fleet's guard: no two snapshots of a server at once, nor two in a period when it
        // changes hands (the row stays locked until this transaction ends). The same round
        // trip finds the left-out texts the repository lacks.
        guard
            let row = try await repository.lockSnapshotRow(
                serverID: server.id, idleLimit: Self.rowIdleLimit, findingMissingTexts: knownStatements != nil,
                deadline: deadline)
        else { throw SnapshotError(.superseded(.rowBusy), step: .commit) }
        if let expectedMark, row.mark != expectedMark {
            throw SnapshotError(.superseded(.landedElsewhere(row.mark, secondsAgo: row.secondsAgo)), step: .commit)
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
        try await report.stage(outcome.errors, in: repository, deadline: deadline)
        // The last word, the fence: this collector still owns the server (its membership
        // session holds the server's lock), else nothing lands. The session is renamed back
        // too: powa_take_snapshot renamed it 'PoWA - ...', which powa-web would take for the
        // repository's own background worker.
        let finish = try await repository.finishSnapshot(
            serverID: server.id, applicationName: applicationName, memberPID: fence,
            checkingTexts: outcome.seenStatements != nil, deadline: deadline)
        guard finish.owned else { throw SnapshotError(.superseded(.notOwned), step: .commit) }
        // A statement powa stored in this transaction with a text we left out (deleted from
        // powa_statements after the repair) rolls it all back.
        if !finish.storedWithoutText.isDisjoint(with: outcome.elidedStatements) {
            throw SnapshotError(
                .repositoryFailed, side: .repository, step: .statementTexts,
                underlying: StatementTextsLost(
                    "statements of powa_statements were deleted during the snapshot, whose texts it left out"))
        }
        // Statements stored with an empty text before (powa keeps the first text it stores):
        // theirs is sent again next time, as for statements not known.
        outcome.seenStatements?.subtract(finish.storedWithoutText)
        outcome.mark = finish.mark
    }

    /// Runs one step that must succeed, on `side`: its error leaves tagged with the side and
    /// the step (a failure that would only have ended a source ends the snapshot here).
    func step<T>(
        _ side: SnapshotError.Side, _ step: SnapshotError.Step, remote: PostgresConnection?,
        repository: PostgresConnection?, _ body: () async throws -> T
    ) async throws(SnapshotError) -> T {
        do {
            return try await body()
        } catch {
            // A statement error aborts the remote's transaction, whose session may still be
            // sound: only a broken session is a lost one.
            throw SnapshotError.classify(
                error, side: side, step: step, remote: remote, remoteInTransaction: false, repository: repository,
                deadline: deadline, silence: silence)
                ?? SnapshotError(
                    side == .remote ? .remoteFailed : .repositoryFailed, side: side, step: step, underlying: error)
        }
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
                // Shutting down: the cleanup is skipped, not failed.
                if Task.isCancelled { break }
                logger.error("cleanup failed", metadata: ["source": "\(cleanup.source)", "error": "\(error)"])
                errors.append("Error while calling the cleanup of \(cleanup.source): \(error)")
            }
        }
        return errors
    }

    // MARK: Global sources

    private func copy(
        _ source: SnapshotSource, remote: PoWASession, to destination: SnapshotDestination, into outcome: inout Outcome
    ) async throws(SnapshotError) {
        guard let remoteSchema = remote.extensions.schema(of: source.schemaOwner) else {
            outcome.errors.append("Extension \(source.schemaOwner) is not installed on the remote server \(workerName)")
            return
        }
        var copyIn: String?
        if case .repository(let repository) = destination {
            guard let repositorySchema = repository.extensions.schema(of: source.schemaOwner) else {
                outcome.errors.append("Extension \(source.schemaOwner) is not installed on the repository server")
                return
            }
            copyIn = source.copyInStatement(schema: repositorySchema)
        }
        // The statements source: the texts the repository knows are left out (any left out of
        // a statement it does not know is restored before powa_take_snapshot).
        var elider: StatementTextElider?
        var copyOut = source.copyOutStatement(serverID: server.id, schema: remoteSchema)
        let step = SnapshotError.Step.source(source.querySource)
        if source.isStatements, let knownStatements, let layout = knownStatements.layout,
            let keys = knownStatements.keys
        {
            elider = StatementTextElider(layout: layout, known: keys)
            if let onRemote = knownStatements.onRemote {
                // The keys for the remote to leave out those texts itself (the elider still
                // counts them, and would leave out any text it sent all the same).
                try await self.step(.remote, step, remote: remote.connection, repository: destination.connection) {
                    try await KnownTextsOnRemote.pass(knownStatements.keyArrays, to: remote.connection, deadline: deadline)
                }
                copyOut = onRemote.copyOutStatement(serverID: server.id, schema: remoteSchema)
            }
        }
        let progress = metrics.map { _ in CopyProgress() }
        do {
            let rows = try await stage(
                from: remote.connection, copyOut,
                to: destination, copyIn: copyIn,
                section: SpoolSection(
                    kind: .source, name: source.querySource, module: source.name, external: source.external),
                step: step, rewrite: elider?.rewrite, progress: progress)
            if let progress, let rows {
                metrics?.sourceCopied(server, source: source.querySource, rows: rows, bytes: progress.bytes)
            }
            if let elider {
                outcome.seenStatements = elider.seen
                outcome.elidedTexts = elider.elidedRows
                outcome.elidedStatements = elider.elided
            }
            outcome.landedSources += 1
            logger.trace("source landed", metadata: ["source": "\(source.querySource)", "rows": "\(rows ?? -1)"])
        } catch {
            if let failure = SnapshotError.classify(
                error, side: .repository, step: step, remote: remote.connection,
                repository: destination.connection, deadline: deadline, silence: silence)
            {
                throw failure
            }
            logger.error("snapshot source failed", metadata: ["source": "\(source.querySource)", "error": "\(error)"])
            outcome.errors.append("\(source.querySource): \(error)")
            if elider != nil { outcome.statementTextsFailed = true }
        }
    }

    /// One source's rows, from the remote to the destination: piped into the repository's
    /// staging table (`copyIn`), or written as a section of the spool file. A failure of the
    /// spool file (a full disk) ends the snapshot; the remote's ends this source only. Returns
    /// the rows the repository stored (nil: spooled, not counted).
    func stage(
        from remote: PostgresConnection, _ copyOut: String, to destination: SnapshotDestination, copyIn: String?,
        section: SpoolSection, step: SnapshotError.Step, rewrite: CopyRowRewrite? = nil, progress: CopyProgress? = nil
    ) async throws -> Int? {
        switch destination {
        case .repository(let repository):
            return try await pipe(
                from: remote, copyOut, to: repository.connection, copyIn ?? "", rewrite: rewrite, progress: progress)
        case .spool(let writer):
            do {
                try await writer.beginSection(section)
            } catch {
                throw SnapshotError(.repositoryFailed, side: .repository, step: step, underlying: SpoolWriteError(error))
            }
            do {
                try await PostgresConnection.pipeCopy(
                    from: remote, PostgresConnection.inSavepoint("powa_source", copyOut), deadline: deadline,
                    rewrite: rewrite, progress: progress
                ) { try await writer.data($0) }
            } catch {
                await remote.rollBackToSavepoint("powa_source", deadline: deadline)
                if error.side == .destination {
                    throw SnapshotError(
                        .repositoryFailed, side: .repository, step: step, underlying: SpoolWriteError(error.underlying))
                }
                do {
                    try await writer.endSection(failed: true)
                } catch let writeError {
                    throw SnapshotError(
                        .repositoryFailed, side: .repository, step: step, underlying: SpoolWriteError(writeError))
                }
                throw error
            }
            do {
                try await writer.endSection(failed: false)
            } catch {
                throw SnapshotError(.repositoryFailed, side: .repository, step: step, underlying: SpoolWriteError(error))
            }
            return nil
        }
    }

    /// Just before `powa_take_snapshot`, the server's row locked: every staged statement whose
    /// text was left out while `powa_statements` does not know it (`missing`, found by the
    /// lock's statement: if that check fails, the snapshot does) gets its text back from the
    /// remote (`StatementTextRepair`); when that fails, those statements are left out of this
    /// snapshot rather than stored without a text.
    private func repairStatementTexts(
        _ missing: [MissingText], remote: PoWASession?, repository: PoWARepository, into outcome: inout Outcome
    ) async throws {
        // (Without a remote session, the texts cannot be read: those statements are left out.)
        guard let remote, let remoteSchema = remote.extensions.schema(of: "powa") else {
            let dropped = try await repository.dropStatementsMissingText(serverID: server.id, deadline: deadline)
            outcome.errors.append("Texts of \(dropped) new statements could not be read: the remote server is not connected")
            return
        }
        do {
            let repair = try await repository.connection.inSavepoint("powa_texts", deadline: deadline) {
                try await StatementTextRepair(serverID: server.id, deadline: deadline, logger: logger)
                    .run(missing: missing, remote: remote.connection, remoteSchema: remoteSchema, repository: repository)
            }
            outcome.restoredTexts = repair.restored
        } catch {
            // The remote's transaction is over by now: only a broken session is lost.
            if let failure = SnapshotError.classify(
                error, side: .repository, step: .statementTexts, remote: remote.connection, remoteInTransaction: false,
                repository: repository.connection, deadline: deadline, silence: silence)
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
    /// given), each side in a savepoint, so that a failure undoes this source only. Each side's
    /// savepoint, COPY and release go as one statement: a source costs three round trips
    /// instead of seven, which is most of what a PoWA 5 snapshot's many small sources cost the
    /// collector. An error comes as a `CopyPipeError` tagged with its side.
    func pipe(
        from remote: PostgresConnection, _ copyOut: String, to repository: PostgresConnection, _ copyIn: String,
        rewrite: CopyRowRewrite? = nil, progress: CopyProgress? = nil
    ) async throws(CopyPipeError) -> Int {
        do {
            return try await PostgresConnection.pipeCopy(
                from: remote, PostgresConnection.inSavepoint("powa_source", copyOut),
                to: repository, PostgresConnection.inSavepoint("powa_source", copyIn), deadline: deadline,
                rewrite: rewrite, progress: progress)
        } catch {
            await remote.rollBackToSavepoint("powa_source", deadline: deadline)
            await repository.rollBackToSavepoint("powa_source", deadline: deadline)
            throw error
        }
    }

    // MARK: The databases to read (PoWA 5)

    /// The snapshot instant and the databases to read, from the remote transaction of the
    /// global sources.
    struct RemoteDatabases {
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
}
