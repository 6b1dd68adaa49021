/// One snapshot source of a server: a `powa_functions` row with `operation = 'snapshot'`.
///
/// `querySource` names a set-returning function on the remote whose rows land in the
/// repository's staging table `<querySource>_tmp`; `queryCleanup` is SQL run on the remote once
/// the snapshot is committed (e.g. `SELECT pg_qualstats_reset()`).
public struct SnapshotSource: Sendable, Hashable {
    public let module: String
    public let querySource: String
    public let queryCleanup: String?

    public init(module: String, querySource: String, queryCleanup: String?) {
        self.module = module
        self.querySource = querySource
        self.queryCleanup = queryCleanup
    }

    /// The COPY run on the remote, with the srvid as first column.
    func copyOutStatement(serverID: Int) -> String {
        "COPY (SELECT \(serverID), * FROM public.\(SQLIdentifier.quote(querySource))(0)) TO STDOUT"
    }

    /// The COPY run on the repository, into the source's staging table.
    var copyInStatement: String {
        "COPY public.\(SQLIdentifier.quote(querySource + "_tmp")) FROM STDIN"
    }
}
