import Foundation

/// PoWA 5: what is read in each database of a remote, over a session to that database.
///
/// - a **module** (`powa_db_functions`, e.g. `pg_stat_all_tables`): statistics of the
///   database, at every snapshot, in every database or only in `databases`;
/// - a **catalog** (`powa_catalog_functions`, e.g. `pg_class`): the database's catalog, so that
///   powa-web can name relations, imported when a database was not imported within the year,
///   or on REFRESH_DB_CAT; `excludedDatabases` are those recent enough to skip.
///
/// `query` is a query (not a function) from the repository, run on the remote inside `COPY
/// (...)`; `stagingTable` is the repository's `*_src_tmp` table, already schema-qualified and
/// quoted by powa.
struct DatabaseSource: Sendable, Hashable {
    enum Kind: Sendable, Hashable { case module, catalog }

    let kind: Kind
    let name: String
    let query: String
    let stagingTable: String
    /// Modules: the databases it is restricted to; nil means every database.
    var databases: [String]? = nil
    /// Catalogs: the databases to skip.
    var excludedDatabases: Set<String> = []

    /// Whether this source reads `database`.
    func applies(to database: String) -> Bool {
        switch kind {
        case .module: databases.map { $0.contains(database) } ?? true
        case .catalog: !excludedDatabases.contains(database)
        }
    }

    /// The COPY run in the remote database: the srvid, the snapshot instant (modules) and the
    /// database's oid come first, as the staging tables expect. `timestamp` is the remote's own
    /// text of `now()`, so every row of a snapshot carries the same instant.
    func copyOutStatement(serverID: Int, timestamp: String) -> String {
        let instant =
            kind == .module ? " \(SQLLiteral.quote(timestamp))::pg_catalog.timestamptz AS ts," : ""
        return """
            COPY (SELECT \(serverID) AS srvid,\(instant) d.dbid, src.* FROM (\(query)) src \
            CROSS JOIN (SELECT oid AS dbid FROM pg_catalog.pg_database \
            WHERE datname = pg_catalog.current_database()) d) TO STDOUT
            """
    }

    /// The COPY run on the repository.
    var copyInStatement: String { "COPY \(stagingTable) FROM STDIN" }

    /// Database names from a JSON array (`to_json(text[])`); nil for JSON null or nothing.
    static func names(json: String?) -> [String]? {
        guard let json, let data = json.data(using: .utf8) else { return nil }
        return (try? JSONDecoder().decode([String]?.self, from: data)) ?? nil
    }
}
