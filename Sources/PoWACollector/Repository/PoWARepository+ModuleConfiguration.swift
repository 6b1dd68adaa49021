import PostgresClient

/// PoWA 5's per-server configuration of modules, extensions and per-database modules, read
/// for `check`: three ways a server silently loses data after an upgrade of powa, which powa
/// itself reports nowhere.
extension PoWARepository {
    /// A module of `powa_modules` and the PostgreSQL it needs (`server_version_num`).
    struct Module: Sendable, Equatable {
        let name: String
        let minimumVersion: Int
    }

    /// A module, extension or per-database module (`datasource_type`: `module`, `extension`,
    /// `db_module`).
    struct Feature: Sendable, Hashable {
        let kind: String
        let name: String
    }

    /// A module, extension or per-database module whose retention powa cannot resolve for a
    /// server, and what powa said.
    struct UnresolvedRetention: Sendable, Equatable {
        let feature: Feature
        let error: String
    }

    /// The modules and per-database modules powa activates for a server it registers, that
    /// this server has no row for: powa's upgrade scripts add a new one to the repository's
    /// own server only, so a server registered before the upgrade never snapshots it. Modules
    /// its PostgreSQL is too old for are left out.
    func featuresMissing(serverID: Int, remoteVersion: Int, deadline: ContinuousClock.Instant?) async throws
        -> [Feature]
    {
        try await connection.query(
            """
            SELECT 'module', m.module FROM \(powa("powa_modules")) AS m
            WHERE m.min_version <= $2::int
              AND NOT EXISTS (
                  SELECT 1 FROM \(powa("powa_module_config")) AS c WHERE c.srvid = $1::int AND c.module = m.module)
            UNION ALL
            SELECT 'db_module', d.db_module FROM \(powa("powa_db_modules")) AS d
            WHERE NOT d.added_manually
              AND NOT EXISTS (
                  SELECT 1 FROM \(powa("powa_db_module_config")) AS c
                  WHERE c.srvid = $1::int AND c.db_module = d.db_module)
            ORDER BY 1 DESC, 2
            """, ["\(serverID)", "\(remoteVersion)"], deadline: deadline
        ).rows.map { Feature(kind: $0[0] ?? "", name: $0[1] ?? "") }
    }

    /// The modules the server's PostgreSQL has but the repository's has not, unless turned off
    /// for the server: `powa_functions` compares a module's `min_version` with the
    /// repository's own `server_version_num`, so such a module is never snapshotted on any
    /// server (PostgreSQL 19's `pg_stat_lock` and `pg_stat_recovery` on an older repository).
    func modulesHiddenByRepositoryVersion(
        serverID: Int, remoteVersion: Int, deadline: ContinuousClock.Instant?
    ) async throws -> (repositoryVersion: Int, modules: [Module]) {
        let rows = try await connection.query(
            """
            SELECT m.module, m.min_version, pg_catalog.current_setting('server_version_num')
            FROM \(powa("powa_modules")) AS m
            WHERE m.min_version > pg_catalog.current_setting('server_version_num')::int
              AND m.min_version <= $2::int
              AND NOT EXISTS (
                  SELECT 1 FROM \(powa("powa_module_config")) AS c
                  WHERE c.srvid = $1::int AND c.module = m.module AND NOT c.enabled)
            ORDER BY m.module
            """, ["\(serverID)", "\(remoteVersion)"], deadline: deadline
        ).rows
        let repositoryVersion = Int(rows.first?[2] ?? "") ?? 0
        return (repositoryVersion, rows.map { Module(name: $0[0] ?? "", minimumVersion: Int($0[1] ?? "") ?? 0) })
    }

    /// Whether this powa resolves retention per module, extension and per-database module
    /// (`powa_get_server_retention`, powa-archivist 5.1.2 and later).
    var resolvesRetentionPerFeature: Bool {
        extensions.powaVersion.map { $0 >= PoWAVersion(major: 5, minor: 1, patch: 2) } ?? false
    }

    /// The features of a server whose retention `powa_get_server_retention` cannot resolve:
    /// the purges that ask for it fail (each reported in `powa_snapshot_metas.errors`; the
    /// snapshot still lands). Asked of powa's own function, each in a savepoint, in a
    /// transaction rolled back: the rules stay powa's. The features are those the server has a
    /// row for, and `pg_database`, which `powa_databases_purge` asks for on every server.
    func unresolvedRetentions(serverID: Int, deadline: ContinuousClock.Instant?) async throws -> [UnresolvedRetention] {
        guard resolvesRetentionPerFeature else { return [] }
        let features = try await connection.query(
            """
            SELECT 'module', module FROM \(powa("powa_module_config")) WHERE srvid = $1::int AND enabled
            UNION SELECT 'module', 'pg_database'
            UNION SELECT 'extension', extname FROM \(powa("powa_extension_config")) WHERE srvid = $1::int AND enabled
            UNION SELECT 'db_module', db_module FROM \(powa("powa_db_module_config")) WHERE srvid = $1::int AND enabled
            ORDER BY 1, 2
            """, ["\(serverID)"], deadline: deadline
        ).rows.map { Feature(kind: $0[0] ?? "", name: $0[1] ?? "") }
        var unresolved: [UnresolvedRetention] = []
        do {
            try await connection.inTransaction(deadline: deadline) {
                for feature in features {
                    do {
                        try await connection.inSavepoint("powa_collector_retention", deadline: deadline) {
                            _ = try await connection.query(
                                "SELECT \(powa("powa_get_server_retention"))($1::int, $2, $3::\(powa("datasource_type")))",
                                ["\(serverID)", feature.name, feature.kind], deadline: deadline)
                        }
                    } catch let error as PostgresError where error.code == .server && error.sqlState != "25P02" {
                        // (25P02: the savepoint could not be rolled back; nothing after it is
                        // powa's answer, so the probe ends with that error.)
                        unresolved.append(UnresolvedRetention(feature: feature, error: error.message))
                    }
                }
                throw RetentionProbeRollback()
            }
        } catch is RetentionProbeRollback {}
        return unresolved
    }
}

/// Ends the transaction of the retention probe: it changes nothing, and keeps nothing.
private struct RetentionProbeRollback: Error {}
