import PostgresClient

/// The statements of a server as the repository knows them, for `StatementTextElider` and
/// `StatementTextRepair`. Nothing here is specific to a PoWA version: PoWA 4.1 and 5 share
/// `powa_statements` and the columns used of `powa_statements_src_tmp`.
extension PoWARepository {
    /// The columns of `powa_statements_src_tmp`, in order: where the key and text of a staged
    /// statement sit (`StatementRowLayout`), and what the remote's source must send.
    func statementStagingColumns(deadline: ContinuousClock.Instant?) async throws -> [String] {
        try await connection.query(
            """
            SELECT attname FROM pg_catalog.pg_attribute
            WHERE attrelid = $1::pg_catalog.regclass AND attnum > 0 AND NOT attisdropped
            ORDER BY attnum
            """, [powa("powa_statements_src_tmp")], deadline: deadline
        ).rows.compactMap { $0[0] }
    }

    /// The statements of `powa_statements` for a server; those stored with an empty
    /// text are not counted as known, so theirs is always sent (left out, the check after
    /// `powa_take_snapshot`, which sees every statement of the snapshot rewritten, would take
    /// them for texts lost in this snapshot and roll every snapshot back).
    func knownStatementKeys(serverID: Int, deadline: ContinuousClock.Instant?) async throws -> Set<StatementKey> {
        try Self.keys(
            try await connection.query(
                "SELECT userid, dbid, queryid FROM \(powa("powa_statements")) WHERE srvid = $1 AND query <> ''",
                ["\(serverID)"], deadline: deadline
            ).rows)
    }

    /// The staged rows of server $1 whose text was left out although `powa_statements` does
    /// not know their statement (purged since, deleted by hand), as one
    /// value: their keys (`MissingText.list`).
    func statementsMissingTextQuery() -> String {
        """
        SELECT \(MissingText.aggregate(of: "t", distinct: true))
        FROM \(powa("powa_statements_src_tmp")) t
        WHERE t.srvid = $1 AND t.query = '' AND t.queryid IS NOT NULL
          AND \(knownStatementFilter(staged: "t"))
        """
    }

    /// A staged row (alias `staged`, of server $1) whose statement `powa_statements` does not
    /// know. Written as `NOT IN` a subquery, which PostgreSQL runs as one hashed subplan over
    /// the server's statements: as an anti-join, with `powa_statements` not analyzed yet after
    /// a server's first snapshot, the planner probed the (srvid, dbid) index once per staged
    /// row, scanning millions of rows (1-1.4 s of the repository's CPU per check). The keys are
    /// never NULL (primary key; staged rows with a NULL queryid are left alone).
    private func knownStatementFilter(staged: String) -> String {
        """
        (\(staged).userid, \(staged).dbid, \(staged).queryid) NOT IN (
            SELECT s.userid, s.dbid, s.queryid FROM \(powa("powa_statements")) s WHERE s.srvid = $1)
        """
    }

    /// The temporary table the restored texts are copied into (this transaction's: the repair
    /// is rare, and a table kept in pooled sessions would only be in the way).
    private static let restoredTextsTable = "pg_temp.powa_collector_restored_texts"

    /// The COPY that fills the restored texts' table (`createRestoredTextsTable`) from the
    /// remote's rows: userid, dbid, queryid, query.
    static let restoredTextsCopyIn = "COPY \(restoredTextsTable) FROM STDIN"

    func createRestoredTextsTable(deadline: ContinuousClock.Instant?) async throws {
        try await connection.execute(
            """
            CREATE TEMPORARY TABLE \(Self.restoredTextsTable)
                (userid oid, dbid oid, queryid bigint, query text) ON COMMIT DROP
            """, deadline: deadline)
    }

    /// When the texts cannot be restored: drops the staged rows whose text is empty and whose
    /// statement `powa_statements` does not know. Returns how many.
    func dropStatementsMissingText(serverID: Int, deadline: ContinuousClock.Instant?) async throws -> Int {
        try await connection.query(
            """
            DELETE FROM \(powa("powa_statements_src_tmp")) t
            WHERE t.srvid = $1 AND t.query = '' AND t.queryid IS NOT NULL
              AND \(knownStatementFilter(staged: "t"))
            """, ["\(serverID)"], deadline: deadline
        ).affectedRows ?? 0
    }

    /// The statements of server `serverID` (an SQL expression) that this transaction wrote in
    /// `powa_statements` with an empty text (stored anew after the repair: deleted from
    /// `powa_statements` meanwhile, alias `s`), as `select` (an aggregate of their keys).
    /// powa_take_snapshot writes them in subtransactions (each function in an EXCEPTION
    /// block), whose xids come after this transaction's own: `age(xmin)`, counted from this
    /// transaction's xid, is 0 or negative for exactly those rows (and for rows of
    /// transactions begun since, which the server's row lock keeps from this server). It
    /// also rewrites every statement it saw (`last_present_ts`): a statement already stored
    /// with an empty text is never left out (`knownStatementKeys`), so only lost texts match.
    func storedWithoutText(serverID: String, as select: String) -> String {
        """
        SELECT \(select) FROM \(powa("powa_statements")) s
        WHERE s.srvid = \(serverID) AND s.query = '' AND pg_catalog.age(s.xmin) <= 0
        """
    }

    /// Rows of (userid, dbid, queryid).
    private static func keys(_ rows: [PostgresRow]) throws -> Set<StatementKey> {
        var keys = Set<StatementKey>(minimumCapacity: rows.count)
        for row in rows {
            guard
                let key = StatementKey(
                    userid: try row.decode(0, as: Int64.self), dbid: try row.decode(1, as: Int64.self),
                    queryid: try row.decode(2, as: Int64.self))
            else { throw PostgresDecodingError(column: 0, text: row[0] ?? "", type: "oid") }
            keys.insert(key)
        }
        return keys
    }

    /// Puts the restored texts into the staged rows; then drops the staged rows whose text is
    /// still missing (the remote no longer has it): a snapshot without them rather than a
    /// statement stored with an empty text. Returns how many rows were dropped.
    func applyRestoredTexts(serverID: Int, deadline: ContinuousClock.Instant?) async throws -> Int {
        let staged = powa("powa_statements_src_tmp")
        _ = try await connection.query(
            """
            UPDATE \(staged) t SET query = r.query FROM \(Self.restoredTextsTable) r
            WHERE t.srvid = $1 AND t.query = '' AND t.queryid = r.queryid AND t.dbid = r.dbid AND t.userid = r.userid
            """, ["\(serverID)"], deadline: deadline)
        return try await connection.query(
            """
            DELETE FROM \(staged) t
            WHERE t.srvid = $1 AND t.query = '' AND t.queryid IS NOT NULL
              AND \(knownStatementFilter(staged: "t"))
              AND NOT EXISTS (
                SELECT 1 FROM \(Self.restoredTextsTable) r
                WHERE t.queryid = r.queryid AND t.dbid = r.dbid AND t.userid = r.userid)
            """, ["\(serverID)"], deadline: deadline
        ).affectedRows ?? 0
    }
}

/// A statement whose text was left out but that the repository does not know.
struct MissingText: Equatable, Sendable {
    let userid: Int64
    let dbid: Int64
    let queryid: Int64

    /// Its key (nil: an oid out of range, which no server sends).
    var key: StatementKey? { StatementKey(userid: userid, dbid: dbid, queryid: queryid) }

    /// The SQL aggregate that lists the keys of rows (of table alias `table`) in one value,
    /// as `list` reads them: "userid dbid queryid", joined by commas (NULL: none).
    static func aggregate(of table: String, distinct: Bool = false) -> String {
        "pg_catalog.string_agg(\(distinct ? "DISTINCT " : "")\(table).userid || ' ' || \(table).dbid || ' ' || \(table).queryid, ',')"
    }

    /// Keys as `aggregate` lists them, from column `column` of a row.
    static func list(_ text: String?, column: Int) throws(PostgresDecodingError) -> [MissingText] {
        var keys: [MissingText] = []
        for key in (text ?? "").split(separator: ",") {
            let ids = key.split(separator: " ").compactMap { Int64($0) }
            guard ids.count == 3 else { throw PostgresDecodingError(column: column, text: String(key), type: "statement key") }
            keys.append(MissingText(userid: ids[0], dbid: ids[1], queryid: ids[2]))
        }
        return keys
    }
}
