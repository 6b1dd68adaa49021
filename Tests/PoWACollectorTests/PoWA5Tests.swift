import Foundation
import PoWACollector
import PostgresClient
import TestBed
import Testing

/// What only PoWA 5 has: versions in `powa_extension_config`, per-database sources and catalogs,
/// REFRESH_DB_CAT, and the checks a PoWA 5 repository makes of its remotes; each test on
/// powa-archivist 5.0.2 and on 5.3.0 (both on PostgreSQL 15; 18 has a suite of its own).
@Suite("PoWA 5", .timeLimit(.minutes(4)))
struct PoWA5Tests {
    /// The powa-archivist releases every test runs against.
    static let releases: [BedKind] = [.powa5, .powa502]

    /// Runs a statement on a remote cluster of the bed, in database `database`.
    static func onRemote(_ bed: TestBed, _ sql: String, port: Int? = nil, database: String = "powa") async throws {
        let connection = try await bed.connect(port: port ?? bed.remotePorts[0], database: database)
        defer { connection.close() }
        try await connection.execute(sql)
    }

    /// `last_refresh` of each database of a server, as seconds since the epoch.
    static func lastRefresh(_ repository: ScratchRepository, _ server: Int) async throws -> [String: Double] {
        let connection = try await repository.connect()
        defer { connection.close() }
        var result: [String: Double] = [:]
        for row in try await connection.query(
            "SELECT datname, extract(epoch FROM last_refresh) FROM powa_catalog_databases WHERE srvid = $1 AND last_refresh IS NOT NULL",
            ["\(server)"]
        ).rows {
            if let name = row[0], let value = row[1].flatMap(Double.init) { result[name] = value }
        }
        return result
    }

    @Test(
        "versions land in powa_extension_config, hypopg's NULL row included (an upsert, not a duplicate key)",
        arguments: releases)
    func versions(kind: BedKind) async throws {
        let bed = try await TestBed.shared(kind)
        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(
            port: bed.remotePorts[1], extensions: "{pg_stat_kcache,pg_qualstats,pg_wait_sampling,pg_track_settings,hypopg}")
        #expect(
            try await repository.value(
                "SELECT coalesce(version, 'NULL') FROM powa_extension_config WHERE srvid = $1 AND extname = 'hypopg'",
                ["\(server)"]) == "NULL")
        let collector = RunningCollector(repository: repository)
        _ = try await repository.waitForSnapshots(server, count: 1)
        try await collector.stop()

        let remote = try await bed.connect(port: bed.remotePorts[1])
        defer { remote.close() }
        let expected = try await remote.query(
            """
            SELECT extname, extversion FROM pg_extension
            WHERE extname IN ('pg_stat_statements','pg_qualstats','pg_stat_kcache','pg_wait_sampling','pg_track_settings')
            UNION ALL SELECT name, default_version FROM pg_available_extensions WHERE name = 'hypopg'
            ORDER BY 1
            """
        ).rows
        let stored = try await repository.connect()
        defer { stored.close() }
        #expect(
            try await stored.query(
                "SELECT extname, version FROM powa_extension_config WHERE srvid = $1 ORDER BY 1", ["\(server)"]
            ).rows == expected)
        let serverVersion = try await remote.query("SHOW server_version").rows[0][0]
        #expect(try await repository.value("SELECT version FROM powa_servers WHERE id = $1", ["\(server)"]) == serverVersion)
        #expect(!collector.logs.lines.contains { $0.contains("duplicate key") })
        #expect(try await repository.errors(server) == "")
    }

    @Test(
        "REFRESH_DB_CAT: answers as powa-web expects, refreshes the named databases (a name with spaces too) or all",
        arguments: releases)
    func refreshCatalogs(kind: BedKind) async throws {
        let bed = try await TestBed.shared(kind)
        let spaced = "cat refresh \(UInt32.random(in: 0...UInt32.max))"
        try await Self.onRemote(bed, "CREATE DATABASE \"\(spaced)\"")
        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(port: bed.remotePorts[0], frequency: 5)
        let collector = RunningCollector(repository: repository)
        let client = try await ControlClient.connect(repository)
        defer { client.close() }
        _ = try await repository.waitForSnapshots(server, count: 1)
        // (Other tests may add databases to this remote meanwhile: only these are looked at.)
        let watched = ["app", "postgres", "powa", "template1", spaced]
        let first = try await Self.lastRefresh(repository, server).filter { watched.contains($0.key) }
        #expect(Set(first.keys) == Set(watched))

        // Catalogs are imported once, not at each snapshot.
        _ = try await repository.waitForSnapshots(server, count: 1)
        #expect(try await Self.lastRefresh(repository, server).filter { watched.contains($0.key) } == first)

        // Malformed requests, unknown server.
        #expect(
            try await client.ask("REFRESH_DB_CAT c1 \(server)", channel: "c1")
                == "REFRESH_DB_CAT ERROR Command \"REFRESH_DB_CAT\" malformed")
        #expect(try await client.ask("REFRESH_DB_CAT c1 x 0", channel: "c1") == "REFRESH_DB_CAT ERROR invalid remote server id")
        #expect(
            try await client.ask("REFRESH_DB_CAT c1 \(server) x", channel: "c1")
                == "REFRESH_DB_CAT ERROR invalid number of databases")
        #expect(
            try await client.ask("REFRESH_DB_CAT c1 \(server) 2 app", channel: "c1")
                == "REFRESH_DB_CAT ERROR Caller asked for 2 db, but found 1")
        #expect(
            try await client.ask("REFRESH_DB_CAT c1 4242 0", channel: "c1") == "REFRESH_DB_CAT ERROR Server id 4242 not found")
        #expect(
            try await client.ask("REFRESH_DB_CAT c1 \(server) 1", channel: "c1")
                == "REFRESH_DB_CAT ERROR Caller asked for 1 db, but found 0")

        // Two named requests before the next snapshot merge; a name with spaces arrives as words.
        let ok = "REFRESH_DB_CAT OK Catalogs will be refreshed during the next snapshot"
        #expect(try await client.ask("REFRESH_DB_CAT c2 \(server) 1 app", channel: "c2") == ok)
        #expect(try await client.ask("REFRESH_DB_CAT c2 \(server) 1 \(spaced)", channel: "c2") == ok)
        // The snapshot running now, if any, started before the request: the next one.
        _ = try await repository.waitForSnapshots(server, count: 2)
        let named = try await Self.lastRefresh(repository, server)
        #expect(named["app"]! > first["app"]! && named[spaced]! > first[spaced]!)
        #expect(named["postgres"] == first["postgres"] && named["powa"] == first["powa"])

        // 0: every database.
        #expect(try await client.ask("REFRESH_DB_CAT c3 \(server) 0", channel: "c3") == ok)
        _ = try await repository.waitForSnapshots(server, count: 2)
        let all = try await Self.lastRefresh(repository, server)
        for database in watched { #expect(all[database]! > named[database]!, "\(database)") }
        #expect(try await repository.errors(server) == "")
        try await collector.stop()
    }

    @Test(
        "a database dropped between snapshots, one that refuses connections: reported, the others still land",
        arguments: releases)
    func databasesComeAndGo(kind: BedKind) async throws {
        // A bed of its own: every snapshot of any server on this remote would see the
        // databases that come and go (5548-5549 for 5.3.0, 6008-6009 for 5.0.2).
        try await TestBed.withPrivate(name: "databases", port: 5448, remotes: 1, kind: kind) { bed in
            try await databasesComeAndGo(bed: bed)
        }
    }

    private func databasesComeAndGo(bed: TestBed) async throws {
        let suffix = UInt32.random(in: 0...UInt32.max)
        let dropped = "dropped_\(suffix)", refusing = "refusing_\(suffix)"
        let port = bed.remotePorts[0]
        try await Self.onRemote(bed, "CREATE DATABASE \(dropped)", port: port)
        try await Self.onRemote(bed, "CREATE DATABASE \(refusing)", port: port)
        let remote = try await bed.connect(port: port)
        let oids = try await remote.query(
            "SELECT (SELECT oid FROM pg_database WHERE datname = $1), (SELECT oid FROM pg_database WHERE datname = $2), (SELECT oid FROM pg_database WHERE datname = 'app')",
            [dropped, refusing]
        ).rows[0]
        remote.close()
        let (droppedID, refusingID, appID) = (oids[0]!, oids[1]!, oids[2]!)
        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(port: port, frequency: 5)
        let collector = RunningCollector(repository: repository)
        _ = try await repository.waitForSnapshots(server, count: 1)
        #expect(try await repository.errors(server) == "")
        let rowsOf = "SELECT count(*) FROM powa_all_tables_history_current WHERE srvid = $1 AND dbid = $2::oid"
        for dbid in [droppedID, refusingID, appID] { #expect(try await repository.int(rowsOf, ["\(server)", dbid]) > 0) }

        // DROP DATABASE works while the collector runs: it keeps no session on a database
        // between snapshots. A library that cannot be loaded makes every connection fail.
        try await Self.onRemote(bed, "DROP DATABASE \(dropped)", port: port, database: "postgres")
        try await Self.onRemote(
            bed, "ALTER DATABASE \(refusing) SET session_preload_libraries = 'no_such_library'", port: port,
            database: "postgres")
        _ = try await repository.waitForErrors(server, containing: "Could not connect to remote database \(refusing)")
        // A snapshot that listed the databases just before the DROP may report the dropped one;
        // the next ones do not.
        let snapts = try await repository.snapts(server)
        _ = try await repository.waitForSnapshots(server, count: 1)
        let errors = try await repository.errors(server)
        #expect(errors.contains("Could not connect to remote database \(refusing)"))
        #expect(!errors.contains(dropped))
        // The others still land at each snapshot.
        let newer = rowsOf + " AND (record).ts >= to_timestamp($3::float8)"
        #expect(try await repository.int(newer, ["\(server)", appID, "\(snapts!)"]) > 0)
        #expect(try await repository.int(newer, ["\(server)", refusingID, "\(snapts!)"]) == 0)
        #expect(collector.collector.board.statuses()[server] == .running)
        try await collector.stop()
    }

    @Test("a deactivated database module is not copied at all", arguments: releases)
    func deactivatedModule(kind: BedKind) async throws {
        let bed = try await TestBed.shared(kind)
        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(port: bed.remotePorts[0], frequency: 5)
        _ = try await repository.value("SELECT powa_deactivate_db_module($1, 'pg_stat_all_indexes')", ["\(server)"])
        let collector = RunningCollector(repository: repository)
        _ = try await repository.waitForSnapshots(server, count: 2)
        try await collector.stop()
        let errors = try await repository.errors(server)
        #expect(errors == "")
        #expect(try await repository.int("SELECT count(*) FROM powa_all_indexes_src_tmp WHERE srvid = $1", ["\(server)"]) == 0)
        #expect(
            try await repository.int("SELECT count(*) FROM powa_all_indexes_history_current WHERE srvid = $1", ["\(server)"]) == 0
        )
        #expect(
            try await repository.int("SELECT count(*) FROM powa_all_tables_history_current WHERE srvid = $1", ["\(server)"]) > 0)
    }

    @Test(
        "a PoWA 4 remote in a PoWA 5 repository: refused at every snapshot with powa-web's words, the worker says so",
        arguments: releases)
    func incompatibleRemote(kind: BedKind) async throws {
        let five = try await TestBed.shared(kind)
        let four = try await TestBed.shared(.four)
        let repository = try await ScratchRepository.create(on: five)
        let server = try await repository.register(port: four.remotePorts[0], frequency: 5)
        let healthy = try await repository.register(port: five.remotePorts[0], frequency: 5)
        let collector = RunningCollector(repository: repository)
        let errors = try await repository.waitForErrors(server, containing: "Incompatible PoWA version")
        #expect(
            errors
                == "Incompatible PoWA version between the repository server (\(five.powaVersion)) and the remote host (4.1.4)")
        #expect(five.powaVersion == (kind.powa ?? "5.0.2"))
        #expect(collector.collector.board.statuses()[server] == .incompatibleVersion)
        _ = try await repository.waitForSnapshots(healthy, count: 2)
        // Replaced, not appended, at every period; nothing landed.
        #expect(try await repository.errors(server) == errors)
        #expect(try await repository.snapts(server) == nil)
        #expect(collector.logs.lines.filter { $0.contains("Incompatible PoWA version") && $0.hasPrefix("error") }.count == 1)
        try await collector.stop()
    }

    @Test(
        "registered extensions missing on the remote: errors in powa-web, the snapshot still lands, the worker runs",
        arguments: releases)
    func missingExtensions(kind: BedKind) async throws {
        let bed = try await TestBed.shared(kind)
        let database = "bare_\(UInt32.random(in: 0...UInt32.max))"
        try await Self.onRemote(bed, "CREATE DATABASE \(database)")
        try await Self.onRemote(bed, "CREATE EXTENSION powa CASCADE", database: database)
        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(port: bed.remotePorts[0], dbname: database, frequency: 5)
        let collector = RunningCollector(repository: repository)
        _ = try await repository.waitForSnapshots(server, count: 1)
        let errors = try await repository.errors(server)
        #expect(
            errors.contains("Extension pg_track_settings is not installed on the remote server 127.0.0.1:\(bed.remotePorts[0])"))
        #expect(errors.contains("Cleanup of powa_qualstats_src not run: extension pg_qualstats is not installed"))
        #expect(
            try await repository.int("SELECT count(*) FROM powa_statements_history_current WHERE srvid = $1", ["\(server)"]) > 0)
        #expect(collector.collector.board.statuses()[server] == .running)
        try await collector.stop()
    }
}
