import Foundation
import PoWACollector
import PostgresClient
import TestBed
import Testing

/// Query texts go to the repository once per statement (`skip_known_query_texts`), and the
/// repository still gets every text it needs, byte for byte.
@Suite("Query texts sent once", .timeLimit(.minutes(4)))
struct QueryTextTests {
    /// The `snapshot taken` records of a collector's log.
    static func snapshots(_ running: RunningCollector) -> [LogCapture.Record] {
        running.logs.all.filter { $0.message == "snapshot taken" }
    }

    @Test(
        "known texts are left out; texts deleted from powa_statements behind the collector's back come back byte-identical from a LATIN1 remote",
        arguments: PoWAMajor.allCases)
    func leftOutAndRestored(major: PoWAMajor) async throws {
        let bed = try await TestBed.shared(major)
        let suffix = UInt32.random(in: 0...UInt32.max)
        let database = "texts_\(suffix)"
        let port = bed.remotePorts[0]
        let admin = try await bed.connect(port: port, database: "postgres")
        try await admin.execute(
            "CREATE DATABASE \(database) TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'")
        admin.close()
        // Texts with what COPY text escapes, quotes, LATIN1 letters, and one of 1 MB (identifiers:
        // pg_stat_statements replaces constants).
        let marker = "texts_marker_\(suffix)"
        let remote = try await SessionTests.connectUTF8(bed, port: port, database: database)
        try await remote.execute("SET client_min_messages = warning; CREATE EXTENSION powa CASCADE")
        let texts = [
            "SELECT current_user AS \"it's\", current_user AS \"é\ttab\", current_user AS \"new\nline\", current_user AS \"back\\slash\" -- \(marker) à ÿ",
            "/* \(marker) " + String(repeating: "0123456789abcdef", count: 65_536) + " */ SELECT 2",
        ]
        for text in texts { _ = try await remote.query(text) }
        remote.close()

        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(port: port, dbname: database, frequency: 5, extensions: "{}")
        let running = RunningCollector(repository: repository)
        _ = try await repository.waitForSnapshots(server, count: 2)
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

        // Byte-identical: the remote's texts (read in UTF8) are the repository's, and no
        // statement of the server has an empty text.
        let reader = try await SessionTests.connectUTF8(bed, port: port, database: database)
        defer { reader.close() }
        let offered = try await reader.query(
            "SELECT queryid::text, query FROM pg_stat_statements WHERE query LIKE '%' || $1 || '%' AND query NOT LIKE '%pg_stat_statements%' ORDER BY 1",
            [marker]
        ).rows
        #expect(offered.count == 2)
        let landed = try await stored.query(
            "SELECT queryid::text, query FROM powa_statements WHERE srvid = $1 AND query LIKE '%' || $2 || '%' ORDER BY 1",
            ["\(server)", marker]
        ).rows
        #expect(landed == offered)
        #expect(landed.contains { $0[1] == texts[0] })
        #expect(
            try await repository.int("SELECT count(*) FROM powa_statements WHERE srvid = $1 AND query = ''", ["\(server)"]) == 0)
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
}
