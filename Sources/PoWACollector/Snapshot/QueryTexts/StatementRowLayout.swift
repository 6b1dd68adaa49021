/// Where a statement's key and text sit in a row of `powa_statements_src_tmp`, as COPY sends
/// it (one field per column, in column order): found by column name on the repository, so
/// that nothing depends on a PoWA version's column list (PoWA 5 adds `toplevel`, for one).
struct StatementRowLayout: Equatable, Sendable {
    let userid: Int
    let dbid: Int
    let queryid: Int
    let query: Int

    /// From the staging table's columns in order; nil when one of the four is missing.
    init?(columns: [String]) {
        guard let userid = columns.firstIndex(of: "userid"), let dbid = columns.firstIndex(of: "dbid"),
            let queryid = columns.firstIndex(of: "queryid"), let query = columns.firstIndex(of: "query")
        else { return nil }
        self.userid = userid
        self.dbid = dbid
        self.queryid = queryid
        self.query = query
    }

    /// The last field a row must be read up to.
    var lastField: Int { max(userid, dbid, queryid, query) }
}
