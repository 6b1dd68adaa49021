import PoWACollector
import PostgresClient
import TestBed
import Testing

/// Runs queries with WHERE clauses on a remote, so pg_stat_statements, pg_qualstats and
/// pg_stat_kcache have something new to report.
func runWorkload(on bed: TestBed, port: Int) async throws {
    let connection = try await bed.connect(port: port)
    defer { connection.close() }
    for value in 1...20 {
        _ = try await connection.query("SELECT count(*) FROM items WHERE grp = $1::int", ["\(value)"])
        _ = try await connection.query("SELECT count(*) FROM items WHERE id < $1::int AND price > 1", ["\(value * 10)"])
    }
}

@Suite("Remote snapshots", .timeLimit(.minutes(4)))
struct SnapshotTests {
    @Test(
        "every enabled source of every active server lands rows, snapts advances, errors stay NULL",
        arguments: PoWAMajor.allCases)
    func everySourceLands(major: PoWAMajor) async throws {
        // A bed of its own: pg_qualstats is reset by each snapshot's cleanup.
        try await TestBed.withPrivate(name: "sources", port: 5450, remotes: 2, major: major) { bed in
            let repository = try await ScratchRepository.create(on: bed)
            let first = try await repository.register(port: bed.remotePorts[0], alias: "one")
            let second = try await repository.register(port: bed.remotePorts[1], alias: "two")
            let before = try await repository.snapts(first)
            #expect(before == nil)

            let collector = RunningCollector(repository: repository)
            // Quals are kept only for statements powa already knows: snapshot, query, snapshot.
            for port in bed.remotePorts { try await runWorkload(on: bed, port: port) }
            _ = try await repository.waitForSnapshots(first, count: 1)
            _ = try await repository.waitForSnapshots(second, count: 1)
            // pg_qualstats_reset() runs on the remote once a snapshot is committed, so quals
            // recorded between a snapshot's copy and that reset are gone (as with every PoWA
            // collector). On a loaded machine the next copy can come before the workload ends:
            // the workload is run again until a snapshot holds it, at most 4 times.
            for _ in 1...4 {
                for port in bed.remotePorts { try await runWorkload(on: bed, port: port) }
                _ = try await repository.waitForSnapshots(first, count: 1)
                _ = try await repository.waitForSnapshots(second, count: 1)
                if try await Self.tablesWithoutRows(major, servers: [first, second], in: repository).isEmpty { break }
            }
            try await collector.stop()

            #expect(try await Self.tablesWithoutRows(major, servers: [first, second], in: repository) == [])
            for server in [first, second] {
                let remote = try await bed.connect(port: bed.remotePorts[server == first ? 0 : 1])
                defer { remote.close() }
                if major == .four {
                    // powa 4.1.4's powa_stat_all_rel() returns nothing on PostgreSQL 15: whatever
                    // the remote source gives must land, no more, no less.
                    let offered = try await remote.query("SELECT count(*) FROM powa_all_relations_src(0)").rows[0][0]
                    let landed = try await repository.int(
                        "SELECT count(*) FROM powa_all_relations_history_current WHERE srvid = $1", ["\(server)"])
                    #expect((landed > 0) == (Int(offered ?? "0")! > 0))
                } else {
                    // Per-database sources: one dbid per connectable database of the remote, and
                    // every catalog imported once for each of them (template0 excluded).
                    let connectable = try await remote.query(
                        "SELECT count(*) FROM pg_database WHERE datallowconn"
                    ).rows[0].decode(0, as: Int.self)
                    #expect(connectable == 4)
                    for table in ["powa_all_tables_history_current", "powa_all_indexes_history_current"] {
                        #expect(
                            try await repository.int(
                                "SELECT count(DISTINCT dbid) FROM \(table) WHERE srvid = $1", ["\(server)"]) == connectable,
                            "\(table)")
                    }
                    #expect(
                        try await repository.value(
                            """
                            SELECT string_agg(datname, ',' ORDER BY datname) FROM powa_catalog_databases
                            WHERE srvid = $1 AND last_refresh IS NOT NULL
                            """, ["\(server)"]) == "app,postgres,powa,template1")
                    // Every per-database row of one snapshot carries the instant of the global ones.
                    #expect(
                        try await repository.int(
                            """
                            SELECT count(DISTINCT (record).ts) FROM powa_all_tables_history_current
                            WHERE srvid = $1 AND (record).ts NOT IN (
                                SELECT (record).ts FROM powa_stat_bgwriter_history_current WHERE srvid = $1)
                            """, ["\(server)"]) == 0)
                    // Catalog rows name the objects of the app database.
                    #expect(
                        try await repository.int(
                            "SELECT count(*) FROM powa_catalog_class WHERE srvid = $1 AND relname = 'orders'",
                            ["\(server)"]) == 1)
                }
                #expect(try await repository.errors(server) == "")
                #expect(try await repository.snapts(server) != nil)
            }
            // The staging tables were emptied by powa_take_snapshot.
            for table in Self.stagingTables(major) {
                #expect(try await repository.int("SELECT count(*) FROM \(table)") == 0, "\(table)")
            }
            let errorLines = collector.logs.lines.filter { $0.hasPrefix("error") }
            #expect(errorLines.isEmpty, "\(errorLines)")
        }
    }

    /// The tables of `tablesWithRows` that hold no row yet for one of the servers.
    static func tablesWithoutRows(_ major: PoWAMajor, servers: [Int], in repository: ScratchRepository) async throws
        -> [String]
    {
        var empty: [String] = []
        for server in servers {
            for table in tablesWithRows(major)
            where try await repository.int("SELECT count(*) FROM \(table) WHERE srvid = $1", ["\(server)"]) == 0 {
                empty.append("\(table) for server \(server)")
            }
        }
        return empty
    }

    /// Tables every snapshot fills (PoWA 5: §10 of the spec, less those empty on PostgreSQL 15
    /// without replication).
    static func tablesWithRows(_ major: PoWAMajor) -> [String] {
        let common = [
            "powa_statements_history_current", "powa_kcache_metrics_current",
            "powa_qualstats_quals_history_current", "powa_wait_sampling_history_current",
            "powa_stat_bgwriter_history_current", "pg_track_settings_history", "powa_databases", "powa_statements",
            "powa_statements_history_current_db", "powa_kcache_metrics_current_db", "powa_qualstats_quals",
            "powa_qualstats_constvalues_history_current", "powa_wait_sampling_history_current_db",
            "pg_track_settings_list", "pg_reboot",
        ]
        guard major == .five else { return common }
        return common + [
            "powa_catalog_databases", "powa_catalog_roles", "powa_stat_activity_history_current",
            "powa_stat_archiver_history_current", "powa_stat_checkpointer_history_current",
            "powa_stat_database_history_current", "powa_stat_database_conflicts_history_current",
            "powa_stat_slru_history_current", "powa_stat_wal_history_current",
            "powa_replication_slots_history_current", "powa_stat_replication_history_current",
            "powa_all_tables_history_current", "powa_all_tables_history_current_db",
            "powa_all_indexes_history_current", "powa_all_indexes_history_current_db",
            "powa_user_functions_history_current", "powa_user_functions_history_current_db",
            "powa_catalog_class", "powa_catalog_attribute", "powa_catalog_namespace", "powa_catalog_type",
            "powa_catalog_collation", "powa_catalog_proc", "powa_catalog_language",
        ]
    }

    /// Staging tables that `powa_take_snapshot` must leave empty.
    static func stagingTables(_ major: PoWAMajor) -> [String] {
        let common = ["powa_statements_src_tmp", "powa_databases_src_tmp", "powa_kcache_src_tmp"]
        guard major == .five else { return common }
        return common + [
            "powa_all_tables_src_tmp", "powa_all_indexes_src_tmp", "powa_user_functions_src_tmp",
            "powa_catalog_class_src_tmp", "powa_catalog_attribute_src_tmp", "powa_stat_activity_src_tmp",
        ]
    }

    @Test("a failing source is reported by name while every other source still lands", arguments: PoWAMajor.allCases)
    func failingSource(major: PoWAMajor) async throws {
        let bed = try await TestBed.shared(major)
        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(port: bed.remotePorts[0])
        // One source whose function is missing on the remote, one whose staging table is
        // missing on the repository.
        let remote = try await bed.connect(port: bed.remotePorts[0])
        try await remote.execute(
            "CREATE OR REPLACE FUNCTION public.only_on_remote_src(_srvid int) RETURNS TABLE(x int) LANGUAGE sql AS 'SELECT 1'")
        remote.close()
        try await repository.execute("CREATE FUNCTION public.noop_snapshot(int) RETURNS void LANGUAGE sql AS 'SELECT'")
        try await repository.addSource(
            serverID: server, module: "missing_remote", querySource: "no_such_function_src", snapshotFunction: "noop_snapshot",
            priority: 0)
        try await repository.addSource(
            serverID: server, module: "missing_tmp", querySource: "only_on_remote_src", snapshotFunction: "noop_snapshot",
            priority: 0)

        let collector = RunningCollector(repository: repository)
        _ = try await repository.waitForSnapshots(server, count: 1)
        try await collector.stop()

        let errors = try await repository.errors(server)
        #expect(errors.contains("no_such_function_src"))
        #expect(errors.contains("only_on_remote_src"))
        #expect(errors.components(separatedBy: "\n").count == 2, "\(errors)")
        #expect(
            try await repository.int("SELECT count(*) FROM powa_statements_history_current WHERE srvid = $1", ["\(server)"]) > 0)
        #expect(
            try await repository.int("SELECT count(*) FROM powa_stat_bgwriter_history_current WHERE srvid = $1", ["\(server)"])
                > 0)
        #expect(collector.logs.lines.contains { $0.contains("snapshot source failed") && $0.contains("no_such_function_src") })
    }

    @Test("versions: powa_servers.version, powa_extensions versions and the hypopg row")
    func versions() async throws {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(port: bed.remotePorts[1])
        #expect(
            try await repository.int(
                "SELECT count(*) FROM powa_extensions WHERE srvid = $1 AND extname = 'hypopg'", ["\(server)"]) == 0)

        let collector = RunningCollector(repository: repository)
        _ = try await repository.waitForSnapshots(server, count: 1)
        try await collector.stop()

        let remote = try await bed.connect(port: bed.remotePorts[1])
        defer { remote.close() }
        let serverVersion = try await remote.query("SHOW server_version").rows[0][0]
        #expect(try await repository.value("SELECT version FROM powa_servers WHERE id = $1", ["\(server)"]) == serverVersion)
        let expected = try await remote.query(
            "SELECT extname, extversion FROM pg_extension WHERE extname IN ('powa','pg_stat_statements','pg_qualstats','pg_stat_kcache','pg_wait_sampling','pg_track_settings') ORDER BY 1"
        ).rows
        let connection = try await repository.connect()
        defer { connection.close() }
        let stored = try await connection.query(
            "SELECT extname, version FROM powa_extensions WHERE srvid = $1 AND extname <> 'hypopg' ORDER BY 1", ["\(server)"]
        ).rows
        #expect(stored == expected)
        let hypopg = try await remote.query("SELECT default_version FROM pg_available_extensions WHERE name = 'hypopg'").rows[0][
            0]
        #expect(
            try await repository.value(
                "SELECT version FROM powa_extensions WHERE srvid = $1 AND extname = 'hypopg'", ["\(server)"]) == hypopg)
    }

    @Test("a remote without the powa extension: a clear error, the other workers unaffected", arguments: PoWAMajor.allCases)
    func remoteWithoutPoWA(major: PoWAMajor) async throws {
        let bed = try await TestBed.shared(major)
        let repository = try await ScratchRepository.create(on: bed)
        let broken = try await repository.register(port: bed.remotePorts[0], hostname: "localhost", dbname: "postgres")
        let healthy = try await repository.register(port: bed.remotePorts[1])

        let collector = RunningCollector(repository: repository)
        _ = try await repository.waitForSnapshots(healthy, count: 2)
        #expect(try await collector.waitForLog("the powa extension is not installed"))
        _ = try await repository.waitForErrors(broken, containing: "the powa extension is not installed")
        #expect(collector.collector.board.statuses(serverID: broken)[broken] == .powaMissing)
        #expect(collector.collector.board.statuses(serverID: healthy)[healthy] == .running)
        try await collector.stop()

        #expect(try await repository.errors(broken).contains("the powa extension is not installed in database \"postgres\""))
        #expect(try await repository.snapts(broken) == nil)
        #expect(try await repository.errors(healthy) == "")
    }

    @Test(
        "unusable server rows are reported (log, powa-web's errors) and skipped; the others are snapshotted; a fixed row is snapshotted after a reload",
        arguments: PoWAMajor.allCases)
    func unusableServerRows(major: PoWAMajor) async throws {
        let bed = try await TestBed.shared(major)
        let repository = try await ScratchRepository.create(on: bed)
        let healthy = try await repository.register(port: bed.remotePorts[0])
        let orphan = try await repository.register(port: bed.remotePorts[1])
        // A registered server whose row was then edited by hand into one no connection can use.
        let edited = try await repository.register(port: bed.remotePorts[1], hostname: "localhost")
        try await repository.execute(
            """
            DELETE FROM powa_snapshot_metas WHERE srvid = \(orphan);
            INSERT INTO powa_servers (hostname, port, username, dbname, frequency)
            VALUES ('127.0.0.1', 70000, 'postgres', 'powa', 5), ('', 5432, 'postgres', 'powa', 5);
            UPDATE powa_servers SET port = 0 WHERE id = \(edited);
            """)
        let collector = RunningCollector(repository: repository)
        _ = try await repository.waitForSnapshots(healthy, count: 1)
        #expect(try await collector.waitForLog("has no row in powa_snapshot_metas"))
        #expect(try await collector.waitForLog("invalid port 70000"))
        #expect(try await collector.waitForLog("empty hostname"))
        #expect(try await collector.waitForLog("server \(edited): invalid port 0"))
        #expect(
            try await repository.errors(edited)
                == "Not snapshotted: its powa_servers row cannot be used (invalid port 0); fix it, then reload")
        #expect(collector.collector.board.statuses()[orphan] == .stopped)
        #expect(collector.collector.board.statuses()[healthy] == .running)
        #expect(collector.collector.board.statuses()[edited] == nil)
        // No worker, but listed for powa-web (and `status`), and not ready.
        let client = try await ControlClient.connect(repository)
        defer { client.close() }
        let answer = try await client.ask("WORKERS_STATUS c \(edited)", channel: "c")
        #expect(answer == "WORKERS_STATUS OK {\"\(edited)\": \"unusable powa_servers row\"}")
        #expect(collector.collector.readiness().notRunning[edited] == .unusableRow)

        // Written once, not again at each reload; fixed, the row is snapshotted and the error goes.
        let version = "SELECT xmin::text FROM powa_snapshot_metas WHERE srvid = $1"
        let written = try await repository.value(version, ["\(edited)"])
        #expect(await collector.collector.reload())
        #expect(try await repository.value(version, ["\(edited)"]) == written)
        try await repository.execute("UPDATE powa_servers SET port = \(bed.remotePorts[1]) WHERE id = \(edited)")
        #expect(await collector.collector.reload())
        _ = try await repository.waitForSnapshots(edited, count: 1)
        #expect(try await repository.errors(edited) == "")
        #expect(
            try await client.ask("WORKERS_STATUS d \(edited)", channel: "d") == "WORKERS_STATUS OK {\"\(edited)\": \"running\"}")
        try await collector.stop()
    }
}
