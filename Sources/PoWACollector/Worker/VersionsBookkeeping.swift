import PostgresClient

/// Records what a remote server runs, as powa-web shows it: `powa_servers.version`, the
/// version of each extension listed in `powa_extensions`, and hypopg's row (from
/// `pg_available_extensions`, since hypopg need not be installed in that database). Refuses
/// a remote whose powa is missing, older than 4.0, or of another major.minor than the
/// repository's.
struct VersionsBookkeeping {
    let server: RemoteServer

    /// A remote the collector must not snapshot.
    struct Incompatible: Error, CustomStringConvertible {
        let description: String
    }

    /// Reads the remote's versions, checks them, and writes them into the repository (in one
    /// transaction). Throws `Incompatible`, or the connection's error.
    func run(remote: PostgresConnection, repository: PoWARepository, deadline: ContinuousClock.Instant) async throws {
        let serverVersion = try await remote.query("SELECT current_setting('server_version')", deadline: deadline)
            .rows[0].decode(0, as: String.self)
        let installed = try await remote.query(
            "SELECT extname, extversion FROM pg_catalog.pg_extension", deadline: deadline
        ).rows
        var extensions: [String: String] = [:]
        for row in installed {
            if let name = row[0], let version = row[1] { extensions[name] = version }
        }
        let hypopg = try await remote.query(
            "SELECT default_version FROM pg_catalog.pg_available_extensions WHERE name = 'hypopg'",
            deadline: deadline
        ).rows.first?[0]

        guard let remoteText = extensions["powa"] else {
            throw Incompatible(
                description: "the powa extension is not installed in database \"\(server.dbname)\" of the remote server"
                    + " (CREATE EXTENSION powa CASCADE there)")
        }
        guard let remotePoWA = PoWAVersion(remoteText), remotePoWA >= .minimum else {
            throw Incompatible(description: "powa \(remoteText) on the remote server is too old: 4.0 or later is required")
        }
        if let repositoryText = try await repository.powaVersion(), let repositoryPoWA = PoWAVersion(repositoryText),
            !repositoryPoWA.isCompatible(with: remotePoWA)
        {
            throw Incompatible(
                description: "powa \(remoteText) on the remote server does not match powa \(repositoryText)"
                    + " on the repository: major and minor versions must be the same")
        }

        let connection = repository.connection
        let id = "\(server.id)"
        try await connection.execute("BEGIN", deadline: deadline)
        do {
            _ = try await connection.query(
                "UPDATE public.powa_servers SET version = $2 WHERE id = $1", [id, serverVersion], deadline: deadline)
            let registered = try await connection.query(
                "SELECT extname FROM public.powa_extensions WHERE srvid = $1", [id], deadline: deadline
            ).rows.compactMap { $0[0] }
            for name in registered where name != "hypopg" {
                _ = try await connection.query(
                    "UPDATE public.powa_extensions SET version = $3 WHERE srvid = $1 AND extname = $2",
                    [id, name, extensions[name]], deadline: deadline)
            }
            if let hypopg {
                _ = try await connection.query(
                    """
                    INSERT INTO public.powa_extensions (srvid, extname, version) VALUES ($1, 'hypopg', $2)
                    ON CONFLICT (srvid, extname) DO UPDATE SET version = excluded.version
                    """, [id, hypopg], deadline: deadline)
            } else {
                _ = try await connection.query(
                    "DELETE FROM public.powa_extensions WHERE srvid = $1 AND extname = 'hypopg'", [id],
                    deadline: deadline)
            }
            try await connection.execute("COMMIT", deadline: deadline)
        } catch {
            try? await connection.execute("ROLLBACK", deadline: deadline)
            throw error
        }
    }
}
