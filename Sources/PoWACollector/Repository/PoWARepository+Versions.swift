import PostgresClient

extension PoWARepository {
    /// Records what a remote server runs where powa-web looks for it, in one transaction:
    /// `powa_servers.version`, the version of each extension registered for the server (PoWA 4:
    /// `powa_extensions`; PoWA 5: `powa_extension_config`, the only place powa-web 5 looks),
    /// and hypopg's row.
    func recordVersions(_ versions: RemoteVersions, serverID: Int, deadline: ContinuousClock.Instant) async throws {
        let table = powa(isPoWA5 ? "powa_extension_config" : "powa_extensions")
        let id = "\(serverID)"
        try await connection.inTransaction(deadline: deadline) {
            _ = try await connection.query(
                "UPDATE \(powa("powa_servers")) SET version = $2 WHERE id = $1", [id, versions.server],
                deadline: deadline)
            let registered = try await connection.query(
                "SELECT extname FROM \(table) WHERE srvid = $1", [id], deadline: deadline
            ).rows.compactMap { $0[0] }
            for name in registered where name != "hypopg" {
                _ = try await connection.query(
                    "UPDATE \(table) SET version = $3 WHERE srvid = $1 AND extname = $2 AND version IS DISTINCT FROM $3",
                    [id, name, versions.extensions[name]], deadline: deadline)
            }
            if let hypopg = versions.hypopg {
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
