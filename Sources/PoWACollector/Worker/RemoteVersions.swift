import PostgresClient

/// What a remote server runs, as powa-web shows it (`PoWARepository.recordVersions`): its
/// PostgreSQL version, the version of each extension installed in its powa database, and
/// hypopg's (from `pg_available_extensions`, since hypopg need not be installed in that
/// database).
///
/// Read when a worker connects and on every reload.
struct RemoteVersions {
    /// `server_version`.
    var server: String
    /// `extversion` by `extname`.
    var extensions: [String: String]
    /// hypopg's default version, nil when the server does not have it.
    var hypopg: String?

    /// Reads them on the remote's session.
    static func read(_ remote: PostgresConnection, deadline: ContinuousClock.Instant) async throws -> RemoteVersions {
        let server = try await remote.query("SELECT pg_catalog.current_setting('server_version')", deadline: deadline)
            .rows[0].decode(0, as: String.self)
        var extensions: [String: String] = [:]
        for row in try await remote.query("SELECT extname, extversion FROM pg_catalog.pg_extension", deadline: deadline).rows {
            if let name = row[0], let version = row[1] { extensions[name] = version }
        }
        let hypopg = try await remote.query(
            "SELECT default_version FROM pg_catalog.pg_available_extensions WHERE name = 'hypopg'",
            deadline: deadline
        ).rows.first?[0]
        return RemoteVersions(server: server, extensions: extensions, hypopg: hypopg)
    }
}
