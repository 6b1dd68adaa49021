import PostgresClient

/// Records what a remote server runs, as powa-web shows it: `powa_servers.version`, the
/// version of each extension registered for the server (PoWA 4: `powa_extensions`; PoWA 5:
/// `powa_extension_config`, the only place powa-web 5 looks), and hypopg's row (from
/// `pg_available_extensions`, since hypopg need not be installed in that database).
///
/// One repository transaction; run when a worker connects and on every reload.
struct VersionsBookkeeping {
    let server: RemoteServer

    func run(remote: PostgresConnection, repository: PoWARepository, deadline: ContinuousClock.Instant) async throws {
        let serverVersion = try await remote.query("SELECT pg_catalog.current_setting('server_version')", deadline: deadline)
            .rows[0].decode(0, as: String.self)
        var installed: [String: String] = [:]
        for row in try await remote.query("SELECT extname, extversion FROM pg_catalog.pg_extension", deadline: deadline).rows {
            if let name = row[0], let version = row[1] { installed[name] = version }
        }
        let hypopg = try await remote.query(
            "SELECT default_version FROM pg_catalog.pg_available_extensions WHERE name = 'hypopg'",
            deadline: deadline
        ).rows.first?[0]

        let table = repository.powa(repository.isPoWA5 ? "powa_extension_config" : "powa_extensions")
        let connection = repository.connection
        let id = "\(server.id)"
        try await connection.inTransaction(deadline: deadline) {
            _ = try await connection.query(
                "UPDATE \(repository.powa("powa_servers")) SET version = $2 WHERE id = $1", [id, serverVersion],
                deadline: deadline)
            let registered = try await connection.query(
                "SELECT extname FROM \(table) WHERE srvid = $1", [id], deadline: deadline
            ).rows.compactMap { $0[0] }
            for name in registered where name != "hypopg" {
                _ = try await connection.query(
                    "UPDATE \(table) SET version = $3 WHERE srvid = $1 AND extname = $2 AND version IS DISTINCT FROM $3",
                    [id, name, installed[name]], deadline: deadline)
            }
            if let hypopg {
                // An upsert: a row registered with `extensions => '{hypopg}'` has a NULL version.
                _ = try await connection.query(
                    """
                    INSERT INTO \(table) (srvid, extname, version) VALUES ($1, 'hypopg', $2)
                    ON CONFLICT (srvid, extname) DO UPDATE SET version = excluded.version
                    """, [id, hypopg], deadline: deadline)
            } else {
                _ = try await connection.query(
                    "DELETE FROM \(table) WHERE srvid = $1 AND extname = 'hypopg'", [id], deadline: deadline)
            }
        }
    }
}

/// Whether a remote may be snapshotted into a repository: powa installed on the remote, 4.0 or
/// later, and of the repository's major.minor (as powa-web and the Python collector require).
/// Checked at every snapshot, so that installing or upgrading powa on the remote needs no
/// reload.
enum PoWACompatibility {
    /// Why a remote cannot be snapshotted, in the words powa-web shows.
    struct Refusal: Error, Equatable, CustomStringConvertible {
        let description: String
        /// The worker status that says so.
        let status: WorkerStatus
    }

    /// Nil when compatible; the refusal otherwise.
    static func check(remote: String?, repository: String?, database: String) -> Refusal? {
        guard let remote else {
            return Refusal(
                description: "the powa extension is not installed in database \"\(database)\" of the remote server"
                    + " (CREATE EXTENSION powa CASCADE there)",
                status: .powaMissing)
        }
        guard let remoteVersion = PoWAVersion(remote), remoteVersion >= .minimum else {
            return Refusal(
                description: "powa \(remote) on the remote server is too old: 4.0 or later is required",
                status: .incompatibleVersion)
        }
        if let repository, let repositoryVersion = PoWAVersion(repository),
            !repositoryVersion.isCompatible(with: remoteVersion)
        {
            return Refusal(
                description:
                    "Incompatible PoWA version between the repository server (\(repository)) and the remote host (\(remote))",
                status: .incompatibleVersion)
        }
        return nil
    }
}
