import PostgresClient
import TestBed

/// A remote server as registered in a run's repository.
struct RegisteredServer: Sendable {
    let hostname: String
    let port: Int
    let alias: String
    /// Filled in once registered.
    var srvid = 0
}

/// A fresh repository database for one measured run, so that runs never mix: powa and
/// pg_track_settings, the servers registered at the run's frequency, and a trigger that logs
/// every snapshot that lands (`powa_take_snapshot` sets `powa_snapshot_metas.snapts = now()`,
/// the start of the snapshot's transaction; with `track_commit_timestamp = on` the commit time
/// of the logged row is that of the snapshot). The log is read after the run: measuring needs
/// no polling, and it is the same for every collector and for the psql floor. The trigger names
/// its table with its schema: PoWA 5 collectors pin `search_path` to pg_catalog.
struct RunRepository {
    let bed: TestBed
    let database: String
    let servers: [RegisteredServer]
    let frequency: Int

    /// The libpq URI of the database, for a collector's configuration.
    var dsn: String { "postgresql://postgres@127.0.0.1:\(bed.repositoryPort)/\(database)" }
    var connectionString: String { bed.connectionString(port: bed.repositoryPort, database: database) }

    static let extensions = "{pg_stat_kcache,pg_qualstats,pg_wait_sampling,pg_track_settings}"

    /// Drops and creates `database`, installs powa and the snapshot log, and registers `servers`.
    static func create(
        bed: TestBed, database: String, servers: [RegisteredServer], frequency: Int
    ) async throws -> RunRepository {
        let admin = try await BenchBed.connect(bed.connectionString(port: bed.repositoryPort, database: "postgres"))
        defer { admin.close() }
        try await admin.execute("SET client_min_messages = warning")
        try await admin.execute("DROP DATABASE IF EXISTS \(database) WITH (FORCE)")
        try await admin.execute("CREATE DATABASE \(database)")
        let connection = try await BenchBed.connect(bed.connectionString(port: bed.repositoryPort, database: database))
        defer { connection.close() }
        guard try await connection.query("SHOW track_commit_timestamp").rows.first?[0] == "on" else {
            throw BenchError("the repository needs track_commit_timestamp = on: run without --reuse")
        }
        try await connection.execute(
            """
            SET client_min_messages = warning;
            CREATE EXTENSION powa CASCADE;
            CREATE EXTENSION pg_track_settings;
            CREATE TABLE bench_snapshots (
                srvid int NOT NULL,
                snapts timestamptz NOT NULL,
                logged timestamptz NOT NULL DEFAULT clock_timestamp()
            );
            CREATE FUNCTION bench_log_snapshot() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.snapts IS DISTINCT FROM OLD.snapts
                    AND current_setting('bench.seeding', true) IS DISTINCT FROM 'on' THEN
                    INSERT INTO public.bench_snapshots (srvid, snapts) VALUES (NEW.srvid, NEW.snapts);
                END IF;
                RETURN NULL;
            END $$;
            CREATE TRIGGER bench_log_snapshot AFTER UPDATE OF snapts ON powa_snapshot_metas
                FOR EACH ROW EXECUTE FUNCTION bench_log_snapshot();
            """)
        func array(_ values: [String]) -> String { "{" + values.joined(separator: ",") + "}" }
        _ = try await connection.query(
            """
            SELECT powa_register_server(hostname => h, port => p, alias => a, username => 'postgres',
                dbname => 'powa', frequency => $4::int, extensions => $5::text[])
            FROM unnest($1::text[], $2::int[], $3::text[]) WITH ORDINALITY AS s(h, p, a, n)
            ORDER BY n
            """,
            [
                array(servers.map(\.hostname)), array(servers.map { String($0.port) }), array(servers.map(\.alias)),
                String(frequency), extensions,
            ])
        let ids = try await connection.query("SELECT alias, id FROM powa_servers WHERE id > 0").rows
        var byAlias: [String: Int] = [:]
        for row in ids { byAlias[row[0] ?? ""] = Int(row[1] ?? "") }
        let registered = try servers.map { server in
            guard let id = byAlias[server.alias] else { throw BenchError("server \(server.alias) was not registered") }
            var copy = server
            copy.srvid = id
            return copy
        }
        return RunRepository(bed: bed, database: database, servers: registered, frequency: frequency)
    }

    /// Sets each server's `snapts` so that a collector started now, keeping the phase of a recent
    /// snapshot as both do, takes server i's first snapshot `offsets[i]` seconds from now (in
    /// [0, frequency)): every method then runs the servers at the same phases. Not logged.
    func seedPhases(offsets: [Double]) async throws {
        let connection = try await BenchBed.connect(connectionString)
        defer { connection.close() }
        try await connection.execute("SET bench.seeding = 'on'")
        for (server, offset) in zip(servers, offsets) {
            let age = Double(frequency) - offset
            _ = try await connection.query(
                "UPDATE powa_snapshot_metas SET snapts = clock_timestamp() - make_interval(secs => $2::float8) WHERE srvid = $1",
                [String(server.srvid), String(age)])
        }
    }

    /// The same repository with every server's `powa_servers.frequency` set to `seconds`
    /// (collectors read it when they start).
    func setFrequency(_ seconds: Int) async throws -> RunRepository {
        let connection = try await BenchBed.connect(connectionString)
        defer { connection.close() }
        _ = try await connection.query(
            "UPDATE powa_servers SET frequency = $1::int WHERE id = ANY ($2::int[])",
            [String(seconds), "{" + servers.map { String($0.srvid) }.joined(separator: ",") + "}"])
        return RunRepository(bed: bed, database: database, servers: servers, frequency: seconds)
    }

    /// PoWA 5: the catalog rows imported so far (powa_catalog_class, _attribute, ...), over all servers.
    func catalogRows() async throws -> Int {
        let connection = try await BenchBed.connect(connectionString)
        defer { connection.close() }
        let counts = ["class", "attribute", "namespace", "type", "collation", "proc", "language"]
            .map { "(SELECT count(*) FROM powa_catalog_\($0) WHERE srvid > 0)" }.joined(separator: " + ")
        return try await connection.query("SELECT (\(counts))::bigint").rows[0].decode(0, as: Int.self)
    }

    /// Offsets that spread `count` servers evenly over a period: (i + 1/2) / count of it.
    static func evenOffsets(count: Int, frequency: Int) -> [Double] {
        (0..<count).map { Double(frequency) * (Double($0) + 0.5) / Double(count) }
    }

    /// The database's clock now, as seconds since the epoch (to cut the log at a moment).
    func clock() async throws -> Double {
        let connection = try await BenchBed.connect(connectionString)
        defer { connection.close() }
        return try await connection.query("SELECT extract(epoch FROM clock_timestamp())::float8").rows[0]
            .decode(0, as: Double.self)
    }

    /// The snapshots that landed, in order, with the errors left in `powa_snapshot_metas`.
    func snapshotLog() async throws -> SnapshotLog {
        let connection = try await BenchBed.connect(connectionString)
        defer { connection.close() }
        let rows = try await connection.query(
            """
            SELECT srvid, extract(epoch FROM snapts)::float8, extract(epoch FROM logged)::float8,
                   extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8
            FROM bench_snapshots ORDER BY srvid, snapts
            """
        ).rows
        let entries = try rows.map { row in
            SnapshotLog.Entry(
                srvid: try row.decode(0, as: Int.self), started: try row.decode(1, as: Double.self),
                logged: try row.decode(2, as: Double.self),
                committed: try row.decodeIfPresent(3, as: Double.self) ?? row.decode(2, as: Double.self))
        }
        let errors = try await connection.query(
            "SELECT srvid, array_to_string(errors, ' | ') FROM powa_snapshot_metas WHERE srvid > 0 AND errors IS NOT NULL"
        ).rows.map { "server \($0[0] ?? "?"): \($0[1] ?? "")" }
        return SnapshotLog(frequency: Double(frequency), servers: servers.count, entries: entries, errors: errors)
    }

    /// Empties the repository cluster's pg_stat_statements (installed with powa), so that
    /// `topStatements` tells what one run had the repository execute.
    func resetStatementStatistics() async throws {
        let connection = try await BenchBed.connect(connectionString)
        defer { connection.close() }
        _ = try await connection.query("SELECT pg_stat_statements_reset()")
    }

    /// The statements of this database that took the repository the most time since the last
    /// reset (top-level ones: `powa_take_snapshot` counts as one), their text shortened.
    func topStatements(limit: Int) async throws -> [(query: String, calls: Int, totalSeconds: Double, maxSeconds: Double)] {
        let connection = try await BenchBed.connect(connectionString)
        defer { connection.close() }
        return try await connection.query(
            """
            SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 70), calls, total_exec_time / 1000, max_exec_time / 1000
            FROM pg_stat_statements
            WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
            ORDER BY total_exec_time DESC LIMIT $1::int
            """, [String(limit)]
        ).rows.map { row in
            (
                row[0] ?? "", try row.decode(1, as: Int.self), try row.decode(2, as: Double.self),
                try row.decode(3, as: Double.self)
            )
        }
    }

    /// Drops the database.
    func drop() async throws {
        let admin = try await BenchBed.connect(bed.connectionString(port: bed.repositoryPort, database: "postgres"))
        defer { admin.close() }
        try await admin.execute("DROP DATABASE IF EXISTS \(database) WITH (FORCE)")
    }
}

/// The snapshots of a run, from the repository's log, and the cadence they kept.
struct SnapshotLog: Sendable {
    struct Entry: Sendable {
        let srvid: Int
        /// `snapts`: the start of the snapshot's repository transaction (epoch seconds).
        let started: Double
        /// When `powa_take_snapshot` set it (clock_timestamp in the trigger).
        let logged: Double
        /// The commit of the snapshot's transaction.
        let committed: Double
        /// The repository transaction: from its start to its commit.
        var transactionSeconds: Double { committed - started }
    }

    let frequency: Double
    let servers: Int
    let entries: [Entry]
    /// `powa_snapshot_metas.errors` left at the end, one line per server.
    let errors: [String]

    /// Only the snapshots that committed in [from, to] (database clock).
    func committed(from: Double = -.infinity, to: Double = .infinity) -> SnapshotLog {
        SnapshotLog(
            frequency: frequency, servers: servers, entries: entries.filter { $0.committed >= from && $0.committed <= to },
            errors: errors)
    }

    var count: Int { entries.count }

    /// Gaps between consecutive snapshots of each server (`snapts` to `snapts`).
    var gaps: [Double] {
        var gaps: [Double] = []
        var previous: Entry?
        for entry in entries {
            if let last = previous, last.srvid == entry.srvid { gaps.append(entry.started - last.started) }
            previous = entry
        }
        return gaps
    }

    /// Servers with at least one snapshot.
    var serversSnapshotted: Int { Set(entries.map(\.srvid)).count }

    var meanGap: Double? { mean(gaps) }
    var maxGap: Double? { gaps.max() }
    /// |mean gap - frequency| / frequency.
    var meanGapError: Double? { meanGap.map { abs($0 - frequency) / frequency } }
    var gapsOverLimit: Int { gaps.filter { $0 > frequency + 1 }.count }
    /// Gaps under half a period: a server snapshotted twice in one period.
    var doubled: Int { gaps.filter { $0 < frequency / 2 }.count }
    var meanTransactionSeconds: Double? { mean(entries.map(\.transactionSeconds)) }

    /// The cadence target of the issue: mean gap within 0.5 % of the frequency, no gap above
    /// frequency + 1 s (and at least one gap to judge).
    var cadenceHeld: Bool {
        guard let error = meanGapError else { return false }
        return error <= 0.005 && gapsOverLimit == 0
    }
}

/// The mean of `values`, nil when empty.
func mean(_ values: [Double]) -> Double? {
    values.isEmpty ? nil : values.reduce(0, +) / Double(values.count)
}

/// The `q` quantile (0...1) of `values`, nil when empty.
func quantile(_ values: [Double], _ q: Double) -> Double? {
    guard !values.isEmpty else { return nil }
    let sorted = values.sorted()
    let position = min(sorted.count - 1, max(0, Int((q * Double(sorted.count - 1)).rounded())))
    return sorted[position]
}
