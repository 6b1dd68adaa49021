import Foundation
import PoWACollector
import PostgresClient
import TestBed
import Testing

/// Query texts go to the repository once per statement (`skip_known_query_texts`), and the
/// repository still gets every text it needs, byte for byte.
@Suite("Query texts sent once", .timeLimit(.minutes(4)))
struct QueryTextTests {
    /// The statements of `server` that `powa_statements` holds with an empty text.
    static func emptyTexts(in repository: ScratchRepository, server: Int) async throws -> Int {
        try await repository.int("SELECT count(*) FROM powa_statements WHERE srvid = $1 AND query = ''", ["\(server)"])
    }

    /// The `snapshot taken` records of a collector's log.
    static func snapshots(_ running: RunningCollector) -> [LogCapture.Record] {
        running.logs.all.filter { $0.message == "snapshot taken" }
    }

    /// A collector running on a server whose database holds odd query texts (`OddQueryTexts`),
    /// once it took two snapshots of it (the second leaving out the texts the first stored).
    static func collectingOddTexts(_ major: PoWAMajor, remote: Int, prefix: String) async throws -> (
        OddQueryTexts, ScratchRepository, server: Int, RunningCollector
    ) {
        let bed = try await TestBed.shared(major)
        let port = bed.remotePorts[remote]
        let odd = try await OddQueryTexts.create(on: bed, port: port, prefix: prefix)
        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(port: port, dbname: odd.database, frequency: 5, extensions: "{}")
        let running = RunningCollector(repository: repository)
        _ = try await repository.waitForSnapshots(server, count: 2)
        return (odd, repository, server, running)
    }

    @Test(
        "known texts are left out; texts deleted from powa_statements behind the collector's back come back byte-identical from a LATIN1 remote",
        arguments: PoWAMajor.allCases)
    func leftOutAndRestored(major: PoWAMajor) async throws {
        let (odd, repository, server, running) = try await Self.collectingOddTexts(major, remote: 0, prefix: "texts")
        let marker = odd.marker
        // The first snapshot knew nothing; the second left out the texts the first stored.
        let taken = Self.snapshots(running)
        #expect(taken.count >= 2)
        #expect(taken.first?.metadata["texts_left_out"] == "0")
        #expect(Int(taken.last?.metadata["texts_left_out"] ?? "") ?? 0 > 0, "\(taken.last?.metadata ?? [:])")
        #expect(try await repository.errors(server) == "")

        // Behind the collector's back: the repository forgets the marked statements.
        let stored = try await repository.connect()
        defer { stored.close() }
        let deleted = try await stored.query(
            "DELETE FROM powa_statements WHERE srvid = $1 AND query LIKE '%' || $2 || '%'", ["\(server)", marker]
        ).affectedRows
        #expect(deleted == 2)
        #expect(try await running.waitForLog("restored the texts of statements the repository did not know"))
        let restored = try #require(running.logs.all.first { $0.message.hasPrefix("restored the texts") })
        #expect(Int(restored.metadata["restored"] ?? "") ?? 0 >= 2, "\(restored.metadata)")
        #expect(restored.metadata["dropped"] == "0")
        _ = try await repository.waitForSnapshots(server, count: 1)
        try await running.stop()

        // Byte-identical, and no statement of the server has an empty text.
        try await odd.expectLandedIntact(in: repository, server: server)
        #expect(try await Self.emptyTexts(in: repository, server: server) == 0)
        #expect(try await repository.errors(server) == "")
    }

    @Test(
        "statements deleted from powa_statements while powa_take_snapshot runs: that snapshot rolls back, the next sends every text",
        arguments: PoWAMajor.allCases)
    func lostDuringTheSnapshot(major: PoWAMajor) async throws {
        let bed = try await TestBed.shared(major)
        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(port: bed.remotePorts[0], frequency: 5)
        let running = RunningCollector(repository: repository)
        _ = try await repository.waitForSnapshots(server, count: 2)
        // After the repair's check, inside powa_take_snapshot (its first UPDATE of
        // powa_snapshot_metas): the server's statements go, once (a sequence, which the
        // rollback does not undo).
        try await repository.execute(
            """
            CREATE SEQUENCE lose_texts_once;
            CREATE FUNCTION lose_texts() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
            BEGIN
                IF pg_catalog.nextval('lose_texts_once') = 1 THEN
                    DELETE FROM powa_statements WHERE srvid = NEW.srvid;
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER lose_texts BEFORE UPDATE ON powa_snapshot_metas FOR EACH ROW
                WHEN (NEW.coalesce_seq <> OLD.coalesce_seq) EXECUTE FUNCTION lose_texts();
            """)
        #expect(try await running.waitForLog("whose texts it left out"), "\(running.logs.lines.suffix(20))")
        let failedAt = try #require(try await repository.snapts(server))
        _ = try await repository.waitForSnapshots(server, count: 1, after: failedAt)
        try await running.stop()
        #expect(try await Self.emptyTexts(in: repository, server: server) == 0)
        #expect(try await repository.int("SELECT count(*) FROM powa_statements WHERE srvid = $1", ["\(server)"]) > 0)
    }

    @Test(
        "texts that cannot be restored: those statements are left out of the snapshot (an error says so), never stored without a text; they land with the next",
        arguments: PoWAMajor.allCases)
    func restoreFails(major: PoWAMajor) async throws {
        let (odd, repository, server, running) = try await Self.collectingOddTexts(
            major, remote: 1, prefix: "unrestored")

        // The repair writes the restored texts into the staged rows (an UPDATE, which nothing
        // else does to them): make it fail, then forget the marked statements.
        try await repository.execute(
            """
            CREATE FUNCTION block_repair() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'texts blocked by the test'; END $$;
            CREATE TRIGGER block_repair BEFORE UPDATE ON powa_statements_src_tmp
                FOR EACH ROW EXECUTE FUNCTION block_repair();
            DELETE FROM powa_statements WHERE srvid = \(server) AND query LIKE '%\(odd.marker)%';
            """)
        #expect(
            try await running.waitForLog("could not restore the texts of new statements"), "\(running.logs.lines.suffix(10))")
        let errors = try await repository.waitForErrors(server, containing: "new statements could not be read")
        #expect(errors.contains("texts blocked by the test"), "\(errors)")
        let failedAt = try #require(try await repository.snapts(server))
        #expect(
            try await repository.int(
                "SELECT count(*) FROM powa_statements WHERE srvid = $1 AND query LIKE '%' || $2 || '%'",
                ["\(server)", odd.marker]) == 0)

        // Unblocked: the worker forgot what it knew, so the next snapshot sends every text.
        try await repository.execute("DROP TRIGGER block_repair ON powa_statements_src_tmp")
        _ = try await repository.waitForSnapshots(server, count: 1, after: failedAt)
        try await running.stop()
        try await odd.expectLandedIntact(in: repository, server: server)
        #expect(try await Self.emptyTexts(in: repository, server: server) == 0)
    }

    @Test("statements stored with an empty text: never left out, so snapshots keep landing")
    func storedEmpty() async throws {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(port: bed.remotePorts[1], frequency: 5)
        let running = RunningCollector(repository: repository)
        _ = try await repository.waitForSnapshots(server, count: 2)
        // As an older collector, or an edit by hand, may have left them. (powa keeps the text
        // it stored first, and rewrites every statement it sees at each snapshot.)
        try await repository.execute("UPDATE powa_statements SET query = '' WHERE srvid = \(server)")
        // The worker still takes them for known: one snapshot rolls back, then none.
        _ = try await repository.waitForSnapshots(server, count: 3, timeout: .seconds(40))
        try await running.stop()
        let rolledBack = running.logs.lines.filter { $0.contains("whose texts it left out") }.count
        #expect(rolledBack <= 1, "\(rolledBack) snapshots rolled back")
        #expect(try await repository.errors(server) == "")
    }

    @Test("skip_known_query_texts off: every text at every snapshot, as the Python collector")
    func turnedOff() async throws {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(port: bed.remotePorts[1], frequency: 5)
        let running = RunningCollector(repository: repository) { $0.skipKnownQueryTexts = false }
        _ = try await repository.waitForSnapshots(server, count: 2)
        try await running.stop()
        let taken = Self.snapshots(running)
        #expect(taken.count >= 2)
        #expect(taken.allSatisfy { $0.metadata["texts_left_out"] == "0" }, "\(taken.map(\.metadata))")
        #expect(try await repository.int("SELECT count(*) FROM powa_statements WHERE srvid = $1", ["\(server)"]) > 0)
    }

    @Test(
        "the remote leaves out the known texts: one COPY text at every snapshot, no key pasted in it; a statement evicted and run again keeps its text",
        arguments: PoWAMajor.allCases)
    func leftOutOnTheRemote(major: PoWAMajor) async throws {
        let (odd, repository, server, running) = try await Self.collectingOddTexts(major, remote: 0, prefix: "onremote")
        let taken = Self.snapshots(running)
        #expect(Int(taken.last?.metadata["texts_left_out"] ?? "") ?? 0 > 0, "\(taken.last?.metadata ?? [:])")
        // Evicted from pg_stat_statements (in this database only: other tests' databases have
        // statements of the same queryid), then run again: a new entry of the same key.
        let odds = try await OddQueryTexts.connectUTF8(odd.bed, port: odd.port, database: odd.database)
        defer { odds.close() }
        _ = try await odds.query(
            """
            SELECT pg_stat_statements_reset(0, dbid, queryid) FROM pg_stat_statements
            WHERE query LIKE '%' || $1 || '%' AND query NOT LIKE '%pg_stat_statements%'
              AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
            """, [odd.marker])
        for text in odd.texts { _ = try await odds.query(text) }
        let before = try #require(try await repository.snapts(server))
        _ = try await repository.waitForSnapshots(server, count: 3, after: before)
        try await running.stop()

        // pg_stat_statements keeps a COPY's text as it is (utility statements are not
        // normalized): keys pasted in it would make a new entry at each snapshot. One, run at
        // every snapshot, reading the keys from the settings.
        let remote = try await odd.bed.connect(port: odd.port, database: odd.database)
        defer { remote.close() }
        let copies = try await remote.query(
            """
            SELECT query, calls FROM pg_stat_statements
            WHERE query LIKE 'COPY%powa_statements_src%'
              AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
            """
        ).rows
        #expect(copies.count == 1, "\(copies.map { $0[0] ?? "" })")
        #expect(copies.first?[0]?.contains("powa_collector.known_userids") == true)
        #expect(Int(copies.first?[1] ?? "") ?? 0 >= 3)
        try await odd.expectLandedIntact(in: repository, server: server)
        #expect(try await repository.errors(server) == "")
    }

    @Test(
        "a remote statements source of another shape than the staging table: the collector leaves the known texts out itself, byte for byte",
        arguments: PoWAMajor.allCases)
    func otherShape(major: PoWAMajor) async throws {
        let bed = try await TestBed.shared(major)
        let port = bed.remotePorts[1]
        let odd = try await OddQueryTexts.create(on: bed, port: port, prefix: "shape")
        // The same rows under other column names: powa's function renamed, a wrapper in its place.
        let remote = try await OddQueryTexts.connectUTF8(bed, port: port, database: odd.database)
        defer { remote.close() }
        try await remote.execute(
            """
            DO $$
            DECLARE
                source regprocedure := (SELECT p.oid FROM pg_proc p WHERE p.proname = 'powa_statements_src');
                arguments text := pg_get_function_arguments(source);
                schema text := (SELECT n.nspname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.oid = source);
            BEGIN
                EXECUTE format('ALTER EXTENSION powa DROP FUNCTION %s', source);
                EXECUTE format('ALTER FUNCTION %s RENAME TO powa_statements_src_original', source);
                EXECUTE format(
                    'CREATE FUNCTION %I.powa_statements_src(%s) RETURNS SETOF record LANGUAGE sql AS %L',
                    schema, replace(arguments, 'OUT calls ', 'OUT calls_renamed '),
                    format('SELECT * FROM %I.powa_statements_src_original($1)', schema));
            END $$
            """)
        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(port: port, dbname: odd.database, frequency: 5, extensions: "{}")
        let running = RunningCollector(repository: repository)
        _ = try await repository.waitForSnapshots(server, count: 3)
        try await running.stop()
        #expect(running.logs.lines.contains { $0.contains("differs from the repository's staging table") })
        let taken = Self.snapshots(running)
        #expect(Int(taken.last?.metadata["texts_left_out"] ?? "") ?? 0 > 0, "\(taken.last?.metadata ?? [:])")
        try await odd.expectLandedIntact(in: repository, server: server)
        #expect(try await repository.errors(server) == "")
    }

    @Test("a remote on a standby: the known texts are left out there too (settings, not writes)")
    func standby() async throws {
        try await TestBed.withPrivate(name: "standby", port: 6140, remotes: 1) { bed in
            let primary = bed.remoteDataDirectories[0]
            try "local replication all trust\n".appendLine(to: primary + "/pg_hba.conf")
            try await bed.pgCtl(primary, ["reload"])
            let standby = bed.directory + "/standby"
            let port = bed.remotePorts[0] + 1
            try await TestBed.run(
                "/usr/sbin/runuser",
                [
                    "-u", "postgres", "--", bed.binDirectory + "/pg_basebackup", "-h", bed.socketDirectory, "-p",
                    "\(bed.remotePorts[0])", "-D", standby, "-R", "-X", "stream", "-c", "fast",
                ])
            try "port = \(port)\n".appendLine(to: standby + "/postgresql.auto.conf")
            try await bed.pgCtl(standby, ["start"])
            do {
                let repository = try await ScratchRepository.create(on: bed)
                let server = try await repository.register(port: port, frequency: 5)
                let running = RunningCollector(repository: repository)
                _ = try await repository.waitForSnapshots(server, count: 3)
                try await running.stop()
                let taken = Self.snapshots(running)
                #expect(Int(taken.last?.metadata["texts_left_out"] ?? "") ?? 0 > 0, "\(taken.last?.metadata ?? [:])")
                #expect(try await repository.errors(server) == "")
                let replica = try await bed.connect(port: port)
                defer { replica.close() }
                #expect(try await replica.query("SELECT pg_is_in_recovery()").rows[0][0] == "t")
                let copies = try await replica.query(
                    "SELECT count(*) FROM pg_stat_statements WHERE query LIKE 'COPY%powa_collector.known_userids%'"
                ).rows[0][0]
                #expect(copies == "1")
                try await bed.pgCtl(standby, ["stop", "-m", "fast"])
            } catch {
                try? await bed.pgCtl(standby, ["stop", "-m", "immediate"])
                throw error
            }
        }
    }
}

extension String {
    /// Appends this text to a file.
    fileprivate func appendLine(to path: String) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(utf8))
    }
}
