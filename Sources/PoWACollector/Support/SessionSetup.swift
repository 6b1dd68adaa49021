import PostgresClient

/// What every session of the collector sets once connected: a `lock_timeout` of 2 s when the
/// server has none, so that a lock never holds a snapshot or a control request for long.
enum SessionSetup {
    static func prepare(_ connection: PostgresConnection, deadline: ContinuousClock.Instant) async throws {
        let current = try await connection.query("SELECT current_setting('lock_timeout')", deadline: deadline)
        if current.rows.first?[0] == "0" {
            try await connection.execute("SET lock_timeout = '2s'", deadline: deadline)
        }
    }
}
