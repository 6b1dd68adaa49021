import Foundation
import PoWACollector
import PostgresClient
import TestBed
import Testing

/// `check`'s warnings about PoWA 5's module configuration, on a powa-archivist 5.3.0 bed whose
/// repository runs PostgreSQL 15, with one PostgreSQL 15 remote and one PostgreSQL 18 remote.
@Suite("check: warnings about PoWA 5.2+ pitfalls", .timeLimit(.minutes(8)))
struct CheckWarningsTests {
    /// `check --json` against the bed's repository: the exit code, and each server's warnings
    /// as (check, detail, hint).
    private static func check(_ path: String) async throws -> (code: Int32, warnings: [Int: [[String: String]]]) {
        let process = try DaemonProcess(DaemonProcess.collectorBinary, ["check", "--config", path, "--json"])
        let code = await process.wait()
        let json = try #require(
            try JSONSerialization.jsonObject(with: Data(process.output.utf8)) as? [String: Any], "\(process.output)")
        var warnings: [Int: [[String: String]]] = [:]
        for server in json["servers"] as? [[String: Any]] ?? [] {
            let id = try #require(server["srvid"] as? Int)
            let list = try #require(server["warnings"] as? [[String: Any]], "no warnings in \(server)")
            warnings[id] = list.map { $0.compactMapValues { $0 as? String } }
        }
        return (code, warnings)
    }

    @Test(
        "a module never activated for a server, a module hidden by the repository's PostgreSQL, a retention powa cannot resolve: each warned with its fix, which clears it"
    )
    func pitfalls() async throws {
        try await TestBed.withPrivate(name: "pitfalls", port: 6130, remotes: 2, kind: .postgres(15, remotes: [15, 18])) {
            bed in
            let repository = try await bed.connect(port: bed.repositoryPort)
            defer { repository.close() }
            let ids = try await repository.query("SELECT id FROM powa_servers WHERE id > 0 ORDER BY port").rows
                .compactMap { Int($0[0] ?? "") }
            try #require(ids.count == 2)
            let (old, new) = (ids[0], ids[1])
            var configuration = CollectorConfiguration(repositoryDSN: bed.connectionString(port: bed.repositoryPort))
            configuration.connectTimeout = 5
            let path = try writeConfiguration(configuration)
            defer { unlink(path) }

            // As registered: nothing to say.
            let clean = try await Self.check(path)
            #expect(clean.code == 0)
            #expect(clean.warnings == [old: [], new: []])

            // A server registered before upgrades that added a module and a per-database
            // module (to server 0 only), and that lacks powa_databases_purge's module; and a
            // module newer than the repository's PostgreSQL (as pg_stat_lock needs 19).
            try await repository.execute(
                """
                DELETE FROM powa_module_config WHERE srvid = \(old) AND module IN ('pg_stat_archiver', 'pg_database');
                DELETE FROM powa_db_module_config WHERE srvid = \(old) AND db_module = 'pg_stat_user_functions';
                UPDATE powa_modules SET min_version = 180000 WHERE module = 'pg_stat_slru';
                """)
            let warned = try await Self.check(path)
            #expect(warned.code == 0, "warnings do not make a server unusable")
            let oldWarnings = try #require(warned.warnings[old])
            #expect(oldWarnings.map { $0["check"] } == ["retention", "modules", "modules"], "\(oldWarnings)")
            let activate = "in the repository database: SELECT \"public\".\"powa_activate_"
            // pg_database: once, for what its absence breaks.
            #expect(oldWarnings[0]["detail"]?.contains("retention of module pg_database") == true, "\(oldWarnings)")
            #expect(oldWarnings[0]["detail"]?.contains("not declared in the config table") == true)
            #expect(oldWarnings[0]["hint"] == activate + "module\"(\(old), 'pg_database');")
            #expect(oldWarnings[1]["detail"]?.hasPrefix("module pg_stat_archiver is not activated") == true)
            #expect(oldWarnings[1]["hint"] == activate + "module\"(\(old), 'pg_stat_archiver');")
            #expect(oldWarnings[2]["detail"]?.hasPrefix("per-database module pg_stat_user_functions") == true)
            #expect(oldWarnings[2]["hint"] == activate + "db_module\"(\(old), 'pg_stat_user_functions');")
            // Only the PostgreSQL 18 remote has what the module needs.
            let newWarnings = try #require(warned.warnings[new])
            #expect(newWarnings.count == 1, "\(newWarnings)")
            #expect(
                newWarnings.first?["detail"]?.hasPrefix(
                    "module pg_stat_slru needs PostgreSQL 18 or later, which this server runs, but the repository runs"
                        + " PostgreSQL 15") == true, "\(newWarnings)")
            #expect(newWarnings.first?["hint"] == "upgrade the repository's PostgreSQL to 18 or later")

            // The text says the same, marked ⚠, and counts them.
            let text = try DaemonProcess(DaemonProcess.collectorBinary, ["check", "--config", path])
            #expect(await text.wait() == 0)
            #expect(text.output.contains("⚠ \(old) remote1 retention: powa cannot resolve"), "\(text.output)")
            #expect(text.output.contains("2 servers: 2 usable, 4 warnings"), "\(text.output)")

            // The hints, pasted as they are, fix what they say.
            for hint in oldWarnings.compactMap({ $0["hint"] }) {
                try await repository.execute(String(hint.dropFirst("in the repository database: ".count)))
            }
            try await repository.execute("UPDATE powa_modules SET min_version = 0 WHERE module = 'pg_stat_slru'")
            let fixed = try await Self.check(path)
            #expect(fixed.code == 0)
            #expect(fixed.warnings == [old: [], new: []])
        }
    }

    @Test("powa-archivist 5.0.2 (no per-feature retention): a registered server gets no warning")
    func powa502() async throws {
        let bed = try await TestBed.shared(.powa502)
        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(port: bed.remotePorts[0], frequency: 5)
        var configuration = CollectorConfiguration(repositoryDSN: repository.dsn)
        configuration.connectTimeout = 5
        let path = try writeConfiguration(configuration)
        defer { unlink(path) }
        let checked = try await Self.check(path)
        #expect(checked.code == 0)
        #expect(checked.warnings == [server: []])
    }
}
