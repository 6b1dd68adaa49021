import PostgresClient

/// Fills a remote's pg_stat_statements with many long statements: `SELECT 1 WHERE 0 IN (1, 2,
/// ..., n)` for n = step, 2 * step, ..., count * step. pg_stat_statements normalizes the
/// constants, so each length of the IN list is one entry (one shape), whose text grows with n,
/// like the long IN lists of ORMs. The statements run inside one DO block with
/// `pg_stat_statements.track = all`, so that generating thousands of them takes seconds.
///
/// With count 4,000 and step 1, an entry's text averages about 14 kB, 56 MB in all; with
/// count 400 and step 10 (every tenth of those shapes) a tenth of both.
enum StatementsWorkload {
    struct Size: Sendable {
        let statements: Int
        /// sum(length(query)) over pg_stat_statements.
        let queryBytes: Int
    }

    /// Resets pg_stat_statements (and pg_qualstats) on the remote, then generates the statements.
    static func generate(on connection: PostgresConnection, count: Int, step: Int) async throws -> Size {
        try await connection.execute(
            """
            SELECT pg_stat_statements_reset();
            SELECT pg_qualstats_reset();
            SET pg_stat_statements.track = 'all';
            DO $$
            BEGIN
                FOR k IN 1..\(count) LOOP
                    EXECUTE 'SELECT 1 WHERE 0 IN ('
                        || array_to_string(ARRAY(SELECT g FROM generate_series(1, k * \(step)) g), ',') || ')';
                END LOOP;
            END $$;
            RESET pg_stat_statements.track;
            """)
        return try await measure(on: connection)
    }

    /// What pg_stat_statements holds now.
    static func measure(on connection: PostgresConnection) async throws -> Size {
        let row = try await connection.query(
            "SELECT count(*), coalesce(sum(length(query)), 0)::bigint FROM pg_stat_statements"
        ).rows[0]
        return Size(statements: try row.decode(0, as: Int.self), queryBytes: try row.decode(1, as: Int.self))
    }
}
