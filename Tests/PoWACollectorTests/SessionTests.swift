import Foundation
import PoWACollector
import PostgresClient
import TestBed
import Testing

/// Every session of the collector is opened the same way, whatever the servers' defaults say.
@Suite("Sessions", .timeLimit(.minutes(4)))
struct SessionTests {
    /// Role defaults that change how COPY text is printed or parsed, or that would cut our
    /// statements short, set on both sides.
    static let hostileDefaults = [
        "DateStyle = 'SQL, DMY'", "IntervalStyle = 'sql_standard'", "extra_float_digits = 0",
        "client_encoding = 'LATIN1'", "statement_timeout = '1ms'", "bytea_output = 'escape'", "lock_timeout = '1ms'",
        "idle_in_transaction_session_timeout = '5ms'",
    ]

    @Test(
        "role defaults cannot change COPY text or cut statements; a LATIN1 remote database's texts land byte-identical",
        arguments: PoWAMajor.allCases)
    func pinnedSettings(major: PoWAMajor) async throws {
        let bed = try await TestBed.shared(major)
        let suffix = UInt32.random(in: 0...UInt32.max)
        let role = "pinned_\(suffix)"
        let port = bed.remotePorts[1]
        let alter = Self.hostileDefaults.map { "ALTER ROLE \(role) SET \($0);" }.joined(separator: " ")
        let admin = try await bed.connect(port: port, database: "postgres")
        try await admin.execute("CREATE ROLE \(role) LOGIN SUPERUSER; \(alter)")
        admin.close()
        let repositoryAdmin = try await bed.connect(port: bed.repositoryPort, database: "postgres")
        try await repositoryAdmin.execute(
            "CREATE ROLE \(role) LOGIN SUPERUSER; \(alter.replacingOccurrences(of: "client_encoding = 'LATIN1'", with: "DateStyle = 'German'"))"
        )
        repositoryAdmin.close()
        let odd = try await OddQueryTexts.create(on: bed, port: port, prefix: "latin")

        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(
            port: port, dbname: odd.database, username: role, frequency: 5, extensions: "{}")
        let collector = RunningCollector(repository: repository) {
            $0.repositoryDSN = bed.connectionString(port: bed.repositoryPort, database: repository.database, user: role)
        }
        _ = try await repository.waitForSnapshots(server, count: 2)
        try await collector.stop()
        let errors = try await repository.errors(server)
        #expect(errors == "")

        try await odd.expectLandedIntact(in: repository, server: server)
        // Dates, floats and intervals landed too (a DMY DateStyle would have failed them).
        #expect(
            try await repository.int("SELECT count(*) FROM powa_stat_bgwriter_history_current WHERE srvid = $1", ["\(server)"])
                > 0)
    }

    @Test("a powa_servers.dbname that looks like a connection string is a database name, never parameters")
    func databaseNameIsNotExpanded() async throws {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        // Without the fix, this would connect to the second remote (and send it the password).
        let injected = "dbname=powa port=\(bed.remotePorts[1])"
        let server = try await repository.register(port: bed.remotePorts[0], dbname: injected, frequency: 5)
        let collector = RunningCollector(repository: repository)
        let errors = try await repository.waitForErrors(server, containing: "does not exist")
        #expect(errors.contains("database \"\(injected)\" does not exist"))
        #expect(collector.collector.board.statuses()[server] == .noRemoteConnection)
        try await collector.stop()
        #expect(try await repository.snapts(server) == nil)
    }
}
