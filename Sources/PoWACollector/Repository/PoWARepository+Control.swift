import PostgresClient

/// The repository as the control protocol's meeting point: powa-web and the collector's own
/// commands talk to the collector with `NOTIFY`, and the members of a fleet to each other.
extension PoWARepository {
    /// Has this session hear the notifications sent on `channel` (any name: it is quoted).
    func listen(_ channel: String, deadline: ContinuousClock.Instant?) async throws {
        try await connection.execute("LISTEN \(SQLIdentifier.quote(channel))", deadline: deadline)
    }

    /// Sends `payload` on `channel` with `pg_notify`: both travel as parameters. A channel is an
    /// identifier: PostgreSQL keeps its first 63 bytes, as `NOTIFY "..."` would (`pg_notify`
    /// would refuse a longer one, such as a channel a client named too long).
    func notify(channel: String, payload: String, deadline: ContinuousClock.Instant?) async throws {
        var name = channel
        while name.utf8.count > 63 { name.removeLast() }
        _ = try await connection.query("SELECT pg_catalog.pg_notify($1, $2)", [name, payload], deadline: deadline)
    }

    /// Whether the session `senderPID` may command the collector. Only roles allowed to signal
    /// backends may: members of `pg_signal_backend`; in PoWA 5 also members of the roles
    /// `powa_roles` maps to `powa_signal_backend`, `powa_write_all_data` or `powa_admin`;
    /// before PostgreSQL 14, roles that may write PoWA's data.
    func mayCommandCollector(senderPID: Int32, deadline: ContinuousClock.Instant?) async throws -> Bool {
        let sql: String
        var parameters = ["\(senderPID)"]
        if isPoWA5 {
            sql = """
                SELECT pg_catalog.pg_has_role(a.usesysid, 'pg_signal_backend', 'USAGE')
                    OR EXISTS (
                        SELECT 1 FROM \(powa("powa_roles")) r
                        JOIN pg_catalog.pg_roles g ON g.rolname = r.rolname
                        WHERE r.powa_role IN ('powa_signal_backend', 'powa_write_all_data', 'powa_admin')
                          AND pg_catalog.pg_has_role(a.usesysid, g.oid, 'USAGE'))
                FROM pg_catalog.pg_stat_activity a WHERE a.pid = $1
                """
        } else if connection.serverVersionNumber >= 140000 {
            sql = """
                SELECT bool_or(pg_catalog.pg_has_role(usesysid, 'pg_signal_backend', 'USAGE'))
                FROM pg_catalog.pg_stat_activity WHERE pid = $1
                """
        } else {
            sql = """
                SELECT bool_or(pg_catalog.has_table_privilege(usesysid, $2, 'INSERT'))
                FROM pg_catalog.pg_stat_activity WHERE pid = $1
                """
            parameters.append(powa("powa_statements"))
        }
        return try await connection.query(sql, parameters, deadline: deadline).rows.first?[0] == "t"
    }

    /// The servers of `powa_servers` (`id > 0`, active or not) as a command names them: id,
    /// `host:port` and alias.
    func serverNames(deadline: ContinuousClock.Instant?) async throws -> [Int: (address: String, alias: String?)] {
        let rows = try await connection.query(
            "SELECT id, hostname, port, alias FROM \(powa("powa_servers")) WHERE id > 0", deadline: deadline
        ).rows
        var names: [Int: (address: String, alias: String?)] = [:]
        for row in rows {
            guard let id = Int(row[0] ?? "") else { continue }
            names[id] = ("\(row[1] ?? "?"):\(row[2] ?? "?")", row[3])
        }
        return names
    }
}
