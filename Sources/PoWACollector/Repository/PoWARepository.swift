import Logging
import PostgresClient

/// The PoWA repository database, seen through one session: every statement the collector
/// runs there. Values always travel as parameters; identifiers are quoted and qualified with
/// the schema powa lives in on this repository.
///
/// The objects differ between PoWA 4.1 and PoWA 5 (`isPoWA5`): the session's own powa version
/// chooses, so one binary serves both.
struct PoWARepository {
    var session: PoWASession

    var connection: PostgresConnection { session.connection }
    var extensions: InstalledExtensions { session.extensions }

    /// Whether this repository has PoWA 5's objects (`powa_extension_config`, the
    /// `powa_functions` view, per-database sources, catalogs, `powa_roles`).
    var isPoWA5: Bool { (extensions.powaVersion?.major ?? 4) >= 5 }

    /// Opens a repository session (see `PoWASession`).
    static func connect(to endpoint: RepositoryEndpoint, logger: Logger) async throws -> PoWARepository {
        PoWARepository(session: try await .repository(endpoint, logger: logger))
    }

    func close() { connection.close() }

    /// Readies a kept session for its next user, in one round trip: renamed `applicationName`
    /// (its name in `pg_stat_activity` and in the log), and its view of the extensions read
    /// afresh (one may have been installed, or powa upgraded, since).
    mutating func rename(to applicationName: String, deadline: ContinuousClock.Instant?) async throws {
        let rows = try await connection.query(
            PinnedSettings.extensionsQuery + ", (SELECT pg_catalog.set_config('application_name', $1, false)) AS renamed",
            [applicationName], deadline: deadline
        ).rows
        session.extensions = InstalledExtensions(rows: rows)
    }

    /// `schema.name` of a powa object on this repository.
    func powa(_ name: String) -> String { extensions.powa(name) }

    /// The active remote servers (`id > 0 AND frequency > 0`), and the rows that cannot be
    /// used, each with the reason.
    func activeServers(deadline: ContinuousClock.Instant? = nil) async throws -> ServerList {
        let result = try await connection.query(
            """
            SELECT id, hostname, alias, port, username, password, dbname, frequency
            FROM \(powa("powa_servers"))
            WHERE id > 0 AND frequency > 0
            ORDER BY id
            """, deadline: deadline)
        var list = ServerList()
        for row in result.rows {
            do {
                list.servers.append(try RemoteServer(row: row))
            } catch {
                list.rejected.append(error)
            }
        }
        return list
    }

    /// The enabled global snapshot sources of a server, in the order powa runs them (ties by
    /// name, so that the order is stable).
    func snapshotSources(serverID: Int, deadline: ContinuousClock.Instant?) async throws -> [SnapshotSource] {
        let sql =
            isPoWA5
            ? """
            SELECT name, query_source, query_cleanup, external
            FROM \(powa("powa_functions"))
            WHERE operation = 'snapshot' AND enabled AND srvid = $1 AND query_source IS NOT NULL
            ORDER BY priority, name, query_source
            """
            : """
            SELECT module, query_source, query_cleanup, false
            FROM \(powa("powa_functions"))
            WHERE operation = 'snapshot' AND enabled AND srvid = $1 AND query_source IS NOT NULL
            ORDER BY priority, module, query_source
            """
        return try await connection.query(sql, ["\(serverID)"], deadline: deadline).rows.map { row in
            SnapshotSource(name: row[0] ?? "", querySource: row[1] ?? "", queryCleanup: row[2], external: row[3] == "t")
        }
    }

    /// PoWA 5: the enabled per-database modules of a server for a remote of that PostgreSQL
    /// version. `powa_db_functions` also returns disabled ones: they are left out here, or
    /// their rows would pile up in the staging tables (no snapshot function consumes them).
    func databaseModules(
        serverID: Int, serverVersionNumber: Int, deadline: ContinuousClock.Instant?
    ) async throws -> [DatabaseSource] {
        try await connection.query(
            """
            SELECT db_module, query_source, tmp_table, pg_catalog.to_json(dbnames)::text
            FROM \(powa("powa_db_functions"))($1, $2)
            WHERE operation = 'snapshot' AND enabled AND query_source IS NOT NULL AND tmp_table IS NOT NULL
            ORDER BY dbnames IS NOT NULL, priority, db_module
            """, ["\(serverID)", "\(serverVersionNumber)"], deadline: deadline
        ).rows.map { row in
            DatabaseSource(
                kind: .module, name: row[0] ?? "", query: row[1] ?? "", stagingTable: row[2] ?? "",
                databases: DatabaseSource.names(json: row[3]))
        }
    }

    /// PoWA 5: the catalogs to import, each with the databases whose catalogs are recent enough
    /// to skip. `refreshAll` (a pending REFRESH_DB_CAT) skips none.
    func catalogs(
        serverID: Int, serverVersionNumber: Int, refreshAll: Bool, deadline: ContinuousClock.Instant?
    ) async throws -> [DatabaseSource] {
        try await connection.query(
            """
            SELECT catname, query_source, tmp_table, pg_catalog.to_json(excluded_dbnames)::text
            FROM \(powa("powa_catalog_functions"))($1, $2, $3::interval)
            WHERE query_source IS NOT NULL
            ORDER BY catname
            """, ["\(serverID)", "\(serverVersionNumber)", refreshAll ? nil : "1 year"], deadline: deadline
        ).rows.map { row in
            DatabaseSource(
                kind: .catalog, name: row[0] ?? "", query: row[1] ?? "", stagingTable: row[2] ?? "",
                excludedDatabases: Set(DatabaseSource.names(json: row[3]) ?? []))
        }
    }

    /// How long ago the server's last snapshot was taken; `.missing` when it has no
    /// `powa_snapshot_metas` row, `.never` when `snapts` is still `-infinity`. Also `snapts`
    /// itself as a mark (`SnapshotMark`), which tells whether another snapshot landed since.
    func lastSnapshot(serverID: Int, deadline: ContinuousClock.Instant?) async throws
        -> (last: LastSnapshot, mark: SnapshotMark?)
    {
        let rows = try await connection.query(
            """
            SELECT CASE WHEN snapts = '-infinity' THEN NULL
                        ELSE extract(epoch FROM clock_timestamp() - snapts)::float8 END,
                   \(SnapshotMark.expression)
            FROM \(powa("powa_snapshot_metas")) WHERE srvid = $1
            """, ["\(serverID)"], deadline: deadline
        ).rows
        guard let row = rows.first else { return (.missing, nil) }
        let mark = row[1].map(SnapshotMark.init)
        guard let seconds = try row.decodeIfPresent(0, as: Double.self) else { return (.never, mark) }
        return (.secondsAgo(seconds), mark)
    }

    /// How a server's `powa_snapshot_metas` row stood when a snapshot locked it.
    struct SnapshotRow {
        var mark: SnapshotMark
        var secondsAgo: Double?
        /// Staged statements whose text must be restored first (asked for only when texts
        /// are filtered): `statementsMissingTextQuery`.
        var missingTexts: [MissingText] = []
    }

    /// Just before `powa_take_snapshot`: locks the server's `powa_snapshot_metas` row for this
    /// transaction unless another transaction holds it (a snapshot of the server committing
    /// elsewhere: nil, powa's own `NOWAIT` would fail), and returns how it stands, with this
    /// transaction's `idle_in_transaction_session_timeout` set to `idleLimit` (a collector that
    /// hangs holding the row frees it). With `findingMissingTexts`, the same round trip finds
    /// the staged statements whose left-out text the repository does not have.
    func lockSnapshotRow(
        serverID: Int, idleLimit: Duration, findingMissingTexts: Bool, deadline: ContinuousClock.Instant?
    ) async throws -> SnapshotRow? {
        let missing = findingMissingTexts ? "(\(statementsMissingTextQuery()))" : "NULL"
        let rows = try await connection.query(
            """
            SELECT \(SnapshotMark.expression),
                   CASE WHEN snapts = '-infinity' THEN NULL
                        ELSE extract(epoch FROM clock_timestamp() - snapts)::float8 END,
                   pg_catalog.set_config('idle_in_transaction_session_timeout', $2, true),
                   \(missing)
            FROM \(powa("powa_snapshot_metas")) WHERE srvid = $1
            FOR UPDATE SKIP LOCKED
            """, ["\(serverID)", "\(PostgresConnection.timeoutMilliseconds(idleLimit))"], deadline: deadline
        ).rows
        guard let row = rows.first, let mark = row[0] else { return nil }
        return SnapshotRow(
            mark: SnapshotMark(mark), secondsAgo: try row.decodeIfPresent(1, as: Double.self),
            missingTexts: try MissingText.list(row[3], column: 3))
    }

    /// Says in `powa_snapshot_metas.errors` (what powa-web shows in red on every page) why
    /// each of these servers is not snapshotted, in one statement: written once (not again at
    /// each reload), never waiting for a row a snapshot holds (it is written next time).
    func reportUnusableRows(_ rejected: [ServerRowError], deadline: ContinuousClock.Instant?) async throws {
        let rows = rejected.filter { $0.id > 0 }
        guard !rows.isEmpty else { return }
        let metas = powa("powa_snapshot_metas")
        _ = try await connection.query(
            """
            UPDATE \(metas) m SET errors = ARRAY[r.error]
            FROM ROWS FROM (pg_catalog.unnest($1::text[]::int[]), pg_catalog.unnest($2::text[])) AS r(srvid, error)
            WHERE m.srvid = r.srvid AND m.errors IS DISTINCT FROM ARRAY[r.error]
              AND m.srvid IN (SELECT srvid FROM \(metas) WHERE srvid = ANY ($1::text[]::int[]) FOR UPDATE SKIP LOCKED)
            """, [PostgresArray.text(rows.map { "\($0.id)" }), PostgresArray.text(rows.map(\.reportedError))],
            deadline: deadline)
    }

    /// What the last statement of a snapshot's transaction found.
    struct SnapshotFinish {
        /// The membership session still holds the server's lock (always true without a fence).
        var owned: Bool
        /// The server's `snapts` now.
        var mark: SnapshotMark?
        /// The statements this transaction wrote in `powa_statements` with an empty text
        /// (asked for only when texts are filtered: `storedWithoutText`).
        var storedWithoutText: Set<StatementKey> = []
    }

    /// The last statement of a snapshot's transaction: renames the session back (powa renamed
    /// it), checks the fence (the membership session `memberPID` still holds the server's
    /// lock; nil: no fence), reads the server's `snapts`, and, with `checkingTexts`, which
    /// statements were stored without a text (`storedWithoutText`): one round trip
    /// for all of it.
    func finishSnapshot(
        serverID: Int, applicationName: String, memberPID: Int32?, checkingTexts: Bool,
        deadline: ContinuousClock.Instant?
    ) async throws -> SnapshotFinish {
        let fence = memberPID == nil ? "true" : FleetLocks.ownsServer()
        let texts =
            checkingTexts ? "(\(storedWithoutText(serverID: "$2", as: MissingText.aggregate(of: "s"))))" : "NULL"
        let row = try await connection.query(
            """
            SELECT pg_catalog.set_config('application_name', $1, false) IS NOT NULL AND \(fence),
                   (SELECT \(SnapshotMark.expression) FROM \(powa("powa_snapshot_metas")) WHERE srvid = $2),
                   \(texts)
            """, [applicationName, "\(serverID)"] + (memberPID.map { ["\($0)"] } ?? []), deadline: deadline
        ).rows[0]
        return SnapshotFinish(
            owned: row[0] == "t", mark: row[1].map(SnapshotMark.init),
            storedWithoutText: Set(try MissingText.list(row[2], column: 2).compactMap(\.key)))
    }

    /// Turns the staged rows into history; returns the number of errors powa met.
    func takeSnapshot(serverID: Int, deadline: ContinuousClock.Instant?) async throws -> Int {
        try await connection.query("SELECT \(powa("powa_take_snapshot"))($1)", ["\(serverID)"], deadline: deadline)
            .rows[0].decode(0, as: Int.self)
    }

    /// Appends errors to what powa-web shows for the server (`powa_snapshot_metas.errors`).
    ///
    /// Outside a snapshot's transaction, two guards: `owner`, the membership session that must
    /// still hold the server's lock (a collector that was frozen, or cut off, must not report
    /// the failure of its last snapshot on a server another collector now runs well); and
    /// `once`, errors already shown are not added again (the same connection error, met by
    /// each worker the server had).
    func appendErrors(
        serverID: Int, _ errors: [String], owner: Int32? = nil, once: Bool = false,
        deadline: ContinuousClock.Instant? = nil
    ) async throws {
        guard !errors.isEmpty else { return }
        let added =
            once
            ? "ARRAY(SELECT e FROM pg_catalog.unnest($2::text[]) e WHERE e <> ALL (coalesce(errors, '{}')))"
            : "$2::text[]"
        var sql = """
            UPDATE \(powa("powa_snapshot_metas")) SET errors = pg_catalog.array_cat(errors, \(added))
            WHERE srvid = $1
            """
        var parameters = ["\(serverID)", PostgresArray.text(errors)]
        if let owner {
            sql += " AND " + FleetLocks.ownsServer(server: "$1", member: "$3")
            parameters.append("\(owner)")
        }
        _ = try await connection.query(sql, parameters, deadline: deadline)
    }

    /// Replaces the server's errors with `errors` (a snapshot that could not be taken at all),
    /// unless they are these already: a refusal or an unusable row, met again at every attempt
    /// or reload, is written once.
    /// `owner`: as for `appendErrors`.
    func replaceErrors(
        serverID: Int, _ errors: [String], owner: Int32? = nil, deadline: ContinuousClock.Instant? = nil
    ) async throws {
        var sql = """
            UPDATE \(powa("powa_snapshot_metas")) SET errors = $2::text[]
            WHERE srvid = $1 AND errors IS DISTINCT FROM $2::text[]
            """
        var parameters = ["\(serverID)", PostgresArray.text(errors)]
        if let owner {
            sql += " AND " + FleetLocks.ownsServer(server: "$1", member: "$3")
            parameters.append("\(owner)")
        }
        _ = try await connection.query(sql, parameters, deadline: deadline)
    }
}

/// The result of reading `powa_servers`.
struct ServerList {
    var servers: [RemoteServer] = []
    var rejected: [ServerRowError] = []
}

/// A server's `snapts` as the repository prints its epoch: equal marks, same last snapshot.
struct SnapshotMark: Equatable, Sendable {
    let text: String
    init(_ text: String) { self.text = text }

    /// The mark of `powa_snapshot_metas` in a query.
    static let expression = "extract(epoch FROM snapts)::text"
}

/// What `powa_snapshot_metas` says of a server's last snapshot.
enum LastSnapshot: Equatable {
    case missing
    case never
    case secondsAgo(Double)
}

extension RemoteServer {
    /// Reads a `powa_servers` row, refusing values no connection could use.
    init(row: PostgresRow) throws(ServerRowError) {
        let id = (try? row.decode(0, as: Int.self)) ?? -1
        func unusable(_ problem: String) -> ServerRowError { ServerRowError(id, problem, alias: row[2]) }
        do {
            let hostname = try row.decode(1, as: String.self)
            let port = try row.decode(3, as: Int.self)
            let username = try row.decode(4, as: String.self)
            let dbname = try row.decode(6, as: String.self)
            let frequency = try row.decode(7, as: Int.self)
            guard !hostname.isEmpty else { throw unusable("empty hostname") }
            guard (1...65535).contains(port) else { throw unusable("invalid port \(port)") }
            guard !username.isEmpty else { throw unusable("empty username") }
            guard !dbname.isEmpty else { throw unusable("empty dbname") }
            self.init(
                id: id, hostname: hostname, alias: row[2], port: port, username: username,
                password: row[5], dbname: dbname, frequency: frequency)
        } catch let error as ServerRowError {
            throw error
        } catch {
            throw unusable("invalid powa_servers row: \(error)")
        }
    }
}

/// A `powa_servers` row the collector cannot use.
struct ServerRowError: Error, CustomStringConvertible {
    /// The row's id (-1 when unreadable).
    let id: Int
    /// What is wrong with it, e.g. "invalid port 0".
    let problem: String
    /// Its alias, if it has one (to name it in `check` and `once`).
    let alias: String?

    init(_ id: Int, _ problem: String, alias: String? = nil) {
        self.id = id
        self.problem = problem
        self.alias = alias
    }

    /// Whether a `--server` selector (an id or an alias) names this row.
    func matches(_ selector: String) -> Bool { selector == "\(id)" || (alias != nil && selector == alias) }

    var description: String { "server \(id): \(problem)" }

    /// What powa-web shows for the server (`powa_snapshot_metas.errors`) while its row stays so.
    var reportedError: String { "Not snapshotted: its powa_servers row cannot be used (\(problem)); fix it, then reload" }
}
