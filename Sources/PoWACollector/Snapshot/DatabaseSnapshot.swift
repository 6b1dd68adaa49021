import Logging
import PostgresClient

/// Step 2 of a `RemoteSnapshot` in PoWA 5: for each connectable database of the remote, over
/// a session to that database, the per-database modules and the catalogs due, streamed into
/// their staging tables with the remote's snapshot instant, inside the repository transaction
/// of the snapshot. A database that cannot be reached, or whose session breaks, is reported
/// and the others go on; the repository failing, the deadline or the silence limit passing
/// ends the snapshot.
struct DatabaseSnapshot {
    let snapshot: RemoteSnapshot
    let databases: RemoteSnapshot.RemoteDatabases
    /// The remote's main session: its own database is read over it (no session of its own).
    let main: PoWASession

    private var deadline: ContinuousClock.Instant { snapshot.deadline }
    private var server: RemoteServer { snapshot.server }
    private var logger: Logger { snapshot.logger }

    /// Reads the databases into `destination`, with `given` sources (the spool's), or those the
    /// repository says are due.
    func copy(
        serverVersionNumber version: Int, to destination: SnapshotDestination, sources given: DatabaseSources? = nil,
        into outcome: inout RemoteSnapshot.Outcome
    ) async throws(SnapshotError) {
        var sources: DatabaseSources
        if let given {
            sources = given
        } else if case .repository(let repository) = destination {
            do {
                sources = try await repository.connection.inSavepoint("powa_db_sources", deadline: deadline) {
                    DatabaseSources(
                        modules: try await repository.databaseModules(
                            serverID: server.id, serverVersionNumber: version, deadline: deadline),
                        catalogs: try await repository.catalogs(
                            serverID: server.id, serverVersionNumber: version,
                            refreshAll: snapshot.catalogRefresh != nil, deadline: deadline))
                }
            } catch {
                // The global sources still land; the per-database ones are reported as missing.
                if let failure = SnapshotError.classify(
                    error, side: .repository, step: .databaseSources, remote: nil, repository: repository.connection,
                    deadline: deadline, silence: snapshot.silence)
                {
                    throw failure
                }
                logger.error("could not read the per-database sources", metadata: ["error": "\(error)"])
                outcome.errors.append("Error while reading the per-database sources and catalogs: \(error)")
                return
            }
        } else {
            // Spooled, without the sources of a landed snapshot to go by.
            outcome.errors.append("The per-database sources were not read: they were unknown while the repository was down")
            return
        }
        if case .databases(let names) = snapshot.catalogRefresh {
            // A refresh of named databases: their catalogs only (the others stay as they are).
            sources.catalogs = sources.catalogs.map { catalog in
                var catalog = catalog
                catalog.excludedDatabases = Set(databases.names).subtracting(names)
                return catalog
            }
        }
        // What a spooled snapshot reads next: the same modules, and the catalogs of databases
        // not imported yet (those read now will be).
        outcome.databaseSources = DatabaseSources(
            modules: sources.modules,
            catalogs: sources.catalogs.map { catalog in
                var catalog = catalog
                catalog.excludedDatabases.formUnion(databases.names)
                return catalog
            })
        for database in databases.names {
            let work =
                sources.modules.filter { $0.applies(to: database) } + sources.catalogs.filter { $0.applies(to: database) }
            guard !work.isEmpty else { continue }
            try await copy(work, database: database, to: destination, into: &outcome)
        }
    }

    /// The sources of one database, over a session of its own (opened for this snapshot and
    /// closed after it: an idle session kept on a database would block `DROP DATABASE`, and one
    /// on `template1` every `CREATE DATABASE`), or over the main session for its own database.
    private func copy(
        _ work: [DatabaseSource], database: String, to destination: SnapshotDestination,
        into outcome: inout RemoteSnapshot.Outcome
    ) async throws(SnapshotError) {
        let session: PoWASession
        let own = database != server.dbname
        do {
            session = own ? try await connect(to: database) : main
        } catch let error as SnapshotError {
            throw error
        } catch {
            if Task.isCancelled { throw SnapshotError(.cancelled, step: .database(database, source: nil)) }
            if ContinuousClock.now >= deadline {
                throw SnapshotError(.timedOut, side: .remote, step: .database(database, source: nil), underlying: error)
            }
            logger.error("could not connect to a remote database", metadata: ["database": "\(database)", "error": "\(error)"])
            outcome.errors.append("Could not connect to remote database \(database): \(error)")
            return
        }
        defer { if own { session.close() } }
        outcome.databases += 1
        let connection = session.connection
        connection.silenceWatch = snapshot.silence
        do {
            try await connection.inTransaction(deadline: deadline) {
                for source in work {
                    try await copy(source, database: database, from: connection, to: destination, into: &outcome)
                }
            }
        } catch let failure as SnapshotError {
            // A database session that broke is that database's problem, not the snapshot's.
            guard case .remoteLost = failure.kind else { throw failure }
            let cause = failure.underlying.map { "\($0)" } ?? "\(failure)"
            logger.error("lost a remote database session", metadata: ["database": "\(database)", "error": "\(cause)"])
            outcome.errors.append("Lost the connection to remote database \(database): \(cause)")
        } catch {
            // The database session's own transaction failed (BEGIN, COMMIT): that database's
            // problem, unless the repository or the snapshot's time is gone too.
            if let failure = SnapshotError.classify(
                error, side: .remote, step: .database(database, source: nil), remote: nil,
                repository: destination.connection, deadline: deadline, silence: snapshot.silence)
            {
                throw failure
            }
            logger.error("remote database session failed", metadata: ["database": "\(database)", "error": "\(error)"])
            outcome.errors.append("Database \(database): \(error)")
        }
    }

    /// A session to `database`. A remote that does not let it connect within the silence limit
    /// is silent as for a statement: the snapshot leaves its regular slot (then the connect goes
    /// on, within `connect_timeout`), or is given up.
    private func connect(to database: String) async throws -> PoWASession {
        let budget = min(snapshot.connectTimeout, max(deadline - .now, .milliseconds(1)))
        if let watch = snapshot.silence, !watch.hasFired, watch.limit < budget {
            do {
                return try await connect(to: database, within: watch.limit)
            } catch  where PostgresError.Code.timedOut ~= error && !Task.isCancelled {
                guard watch.fire() else {
                    throw SnapshotError(.remoteSilent(watch.limit), side: .remote, step: .database(database, source: nil))
                }
                return try await connect(to: database, within: budget - watch.limit)
            }
        }
        return try await connect(to: database, within: budget)
    }

    /// (How long it took is what the remote needs: counted in the next silence limit.)
    private func connect(to database: String, within timeout: Duration) async throws -> PoWASession {
        let began = ContinuousClock.now
        let session = try await PoWASession.database(
            database, of: server, serverVersionNumber: main.connection.serverVersionNumber,
            applicationName: ApplicationName.workerDatabase(snapshot.workerName, database),
            connectTimeout: max(timeout, .milliseconds(1)), options: snapshot.connectionOptions, logger: logger)
        snapshot.silence?.waited(.now - began)
        return session
    }

    /// One source of a database: its failure alone is reported, and the database goes on.
    private func copy(
        _ source: DatabaseSource, database: String, from connection: PostgresConnection,
        to destination: SnapshotDestination, into outcome: inout RemoteSnapshot.Outcome
    ) async throws(SnapshotError) {
        let step = SnapshotError.Step.database(database, source: source.name)
        do {
            let rows = try await snapshot.stage(
                from: connection, source.copyOutStatement(serverID: server.id, timestamp: databases.instant),
                to: destination, copyIn: source.copyInStatement,
                section: SpoolSection(
                    kind: source.kind == .module ? .module : .catalog, name: source.name, database: database),
                step: step)
            outcome.landedDatabaseSources += 1
            logger.trace(
                "database source landed",
                metadata: ["database": "\(database)", "source": "\(source.name)", "rows": "\(rows ?? -1)"])
        } catch {
            if let failure = SnapshotError.classify(
                error, side: .repository, step: step, remote: connection,
                repository: destination.connection, deadline: deadline, silence: snapshot.silence)
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
