import PostgresClient
import TestBed
import Testing

/// A LATIN1 database of a remote, with powa, whose pg_stat_statements holds statements with
/// what COPY text must escape (tab, newline, backslash), quotes, LATIN1 letters, and one of
/// 1 MB: the texts that must reach `powa_statements` byte for byte. Identifiers only, since
/// pg_stat_statements replaces constants.
struct OddQueryTexts {
    let bed: TestBed
    let port: Int
    let database: String
    /// In each text, so that the test finds its own statements.
    let marker: String
    let texts: [String]

    /// Creates the database on the remote at `port` and runs the statements there.
    static func create(on bed: TestBed, port: Int, prefix: String) async throws -> OddQueryTexts {
        let suffix = UInt32.random(in: 0...UInt32.max)
        let database = "\(prefix)_\(suffix)"
        let admin = try await bed.connect(port: port, database: "postgres")
        try await admin.execute(
            "CREATE DATABASE \(database) TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'")
        admin.close()
        let marker = "\(prefix)_marker_\(suffix)"
        let texts = [
            "SELECT current_user AS \"it's\", current_user AS \"é\ttab\", current_user AS \"new\nline\", current_user AS \"back\\slash\" -- \(marker) à ÿ",
            "/* \(marker) " + String(repeating: "0123456789abcdef", count: 65_536) + " */ SELECT 2",
        ]
        let remote = try await connectUTF8(bed, port: port, database: database)
        defer { remote.close() }
        try await remote.execute("SET client_min_messages = warning; CREATE EXTENSION powa CASCADE")
        for text in texts { _ = try await remote.query(text) }
        return OddQueryTexts(bed: bed, port: port, database: database, marker: marker, texts: texts)
    }

    /// A session that says what it sends: UTF8 (a LATIN1 database would otherwise take our
    /// UTF8 bytes for LATIN1 ones).
    static func connectUTF8(_ bed: TestBed, port: Int, database: String) async throws -> PostgresConnection {
        try await PostgresConnection.connect(
            ConnectionConfiguration(
                connectionString: bed.connectionString(port: port, database: database),
                overrides: [.init("client_encoding", "UTF8")]))
    }

    /// Expects the statements' texts in `powa_statements` for `server` to be the remote's, byte
    /// for byte (both read in UTF8), the 1 MB one included.
    func expectLandedIntact(in repository: ScratchRepository, server: Int) async throws {
        let reader = try await Self.connectUTF8(bed, port: port, database: database)
        defer { reader.close() }
        let offered = try await reader.query(
            "SELECT queryid::text, query FROM pg_stat_statements WHERE query LIKE '%' || $1 || '%' AND query NOT LIKE '%pg_stat_statements%' ORDER BY 1",
            [marker]
        ).rows
        #expect(offered.count == 2)
        let stored = try await repository.connect()
        defer { stored.close() }
        let landed = try await stored.query(
            "SELECT queryid::text, query FROM powa_statements WHERE srvid = $1 AND query LIKE '%' || $2 || '%' ORDER BY 1",
            ["\(server)", marker]
        ).rows
        #expect(landed == offered)
        #expect(landed.contains { $0[1] == texts[0] })
        #expect(landed.contains { ($0[1]?.utf8.count ?? 0) > 1_000_000 })
    }
}
