import PostgresClient

/// The remote leaves out the texts the repository knows, before the rows leave it: the COPY
/// of `powa_statements_src` joins powa's own rows (powa stays the authority on what they
/// are) against the known keys and sends `''` for those statements' texts. Most of a
/// snapshot's bytes are texts the repository has, which the remote would otherwise send,
/// and the collector read, at every snapshot.
///
/// The keys travel as bind parameters of a `set_config` on custom settings, local to the
/// remote transaction, which the COPY reads: never pasted into a statement's text, which
/// would make each snapshot's COPY a new pg_stat_statements entry (PostgreSQL 15 and older
/// track utility statements by their text), and collected by powa next. `set_config` works on
/// a standby too.
///
/// The COPY names each column of the source, so it is used only when the remote function's
/// columns (from `pg_proc`) are exactly the staging table's (after its `srvid`): for any other
/// shape, the collector leaves out the texts itself as the rows pass (`StatementTextElider`).
struct KnownTextsOnRemote: Equatable, Sendable {
    /// The source's columns, in order.
    let columns: [String]

    /// From the remote function's columns and the staging table's; nil when they differ, or
    /// lack a statement's key or text.
    init?(remote: [String], staging: [String]) {
        guard staging.first == "srvid", Array(staging.dropFirst()) == remote,
            ["userid", "dbid", "queryid", "query"].allSatisfy(remote.contains)
        else { return nil }
        columns = remote
    }

    /// The settings the keys travel in.
    static let settings = (
        userids: "powa_collector.known_userids", dbids: "powa_collector.known_dbids",
        queryids: "powa_collector.known_queryids"
    )

    /// Sets the known keys for the current remote transaction: $1, $2 and $3 are the userids,
    /// dbids and queryids as array literals (`StatementKey.arrays`).
    static let setKeys = """
        SELECT pg_catalog.set_config('\(settings.userids)', $1, true),
               pg_catalog.set_config('\(settings.dbids)', $2, true),
               pg_catalog.set_config('\(settings.queryids)', $3, true)
        """

    /// Hands `keys` (`StatementKey.arrays`) to the remote for the rest of its transaction.
    static func pass(
        _ keys: (userids: String, dbids: String, queryids: String), to remote: PostgresConnection,
        deadline: ContinuousClock.Instant?
    ) async throws {
        _ = try await remote.query(setKeys, [keys.userids, keys.dbids, keys.queryids], deadline: deadline)
    }

    /// The COPY of the source (in powa's quoted `schema`) with the srvid first and the known
    /// texts left out: the same text at every snapshot of the server.
    func copyOutStatement(serverID: Int, schema: String) -> String {
        let list = columns.map { column in
            column == "query"
                ? "CASE WHEN k.queryid IS NULL OR s.query IS NULL THEN s.query ELSE '' END"
                : "s.\(SQLIdentifier.quote(column))"
        }.joined(separator: ", ")
        return """
            COPY (SELECT \(serverID), \(list)
                  FROM \(schema).powa_statements_src(0) s
                  LEFT JOIN \(Self.keys) AS k(userid, dbid, queryid)
                  ON k.userid = s.userid AND k.dbid = s.dbid AND k.queryid = s.queryid) TO STDOUT
            """
    }

    /// The keys the settings carry, as rows (`ROWS FROM`: a qualified `unnest` takes one array).
    static let keys = """
        ROWS FROM (
            pg_catalog.unnest(pg_catalog.current_setting('\(settings.userids)')::pg_catalog.oid[]),
            pg_catalog.unnest(pg_catalog.current_setting('\(settings.dbids)')::pg_catalog.oid[]),
            pg_catalog.unnest(pg_catalog.current_setting('\(settings.queryids)')::pg_catalog.int8[]))
        """

    /// The output columns of the remote's `powa_statements_src`, in order (powa's `schema`
    /// unquoted).
    static func remoteColumns(
        on remote: PostgresConnection, schema: String, deadline: ContinuousClock.Instant?
    ) async throws -> [String] {
        try await remote.query(
            """
            SELECT a.name FROM pg_catalog.pg_proc p
            JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace,
            LATERAL ROWS FROM (pg_catalog.unnest(p.proargnames), pg_catalog.unnest(p.proargmodes::pg_catalog.text[]))
                WITH ORDINALITY AS a(name, mode, position)
            WHERE n.nspname = $1 AND p.proname = 'powa_statements_src' AND a.mode IN ('o', 'b', 't')
            ORDER BY a.position
            """, [schema], deadline: deadline
        ).rows.compactMap { $0[0] }
    }
}
