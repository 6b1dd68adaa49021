/// One global snapshot source of a server: a `powa_functions` row with `operation = 'snapshot'`.
///
/// `querySource` names a set-returning function on the remote whose rows land in the
/// repository's staging table `<querySource>_tmp`; `queryCleanup` is SQL run on the remote once
/// the snapshot is committed (e.g. `SELECT {pg_qualstats}.pg_qualstats_reset()` in PoWA 5, whose
/// `{extname}` placeholders stand for that extension's schema on the remote).
///
/// Both live in powa's schema, except for an `external` source (PoWA 5: pg_track_settings),
/// whose function and staging table belong to the extension `name`, in its own schema on each
/// side.
public struct SnapshotSource: Sendable, Hashable {
    /// The module (PoWA 4) or the extension or module name (PoWA 5).
    public let name: String
    public let querySource: String
    public let queryCleanup: String?
    public let external: Bool

    public init(name: String, querySource: String, queryCleanup: String?, external: Bool = false) {
        self.name = name
        self.querySource = querySource
        self.queryCleanup = queryCleanup
        self.external = external
    }

    /// Whether this is powa's statements source, whose rows carry query texts.
    var isStatements: Bool { !external && querySource == "powa_statements_src" }

    /// The extension whose schema holds this source's objects.
    var schemaOwner: String { external ? name : "powa" }

    /// The COPY run on the remote, with the srvid as first column; `schema` is quoted.
    func copyOutStatement(serverID: Int, schema: String) -> String {
        "COPY (SELECT \(serverID), * FROM \(schema).\(SQLIdentifier.quote(querySource))(0)) TO STDOUT"
    }

    /// The COPY run on the repository, into the source's staging table; `schema` is quoted.
    func copyInStatement(schema: String) -> String {
        "COPY \(schema).\(SQLIdentifier.quote(querySource + "_tmp")) FROM STDIN"
    }

    /// The cleanup with each `{extname}` replaced by that extension's quoted schema on the
    /// remote; throws the name of an extension that is not installed there.
    func expandedCleanup(remote: InstalledExtensions) throws(MissingExtension) -> String? {
        guard let cleanup = queryCleanup, !cleanup.isEmpty else { return nil }
        var result = ""
        var rest = Substring(cleanup)
        while let open = rest.firstIndex(of: "{") {
            guard let close = rest[open...].firstIndex(of: "}") else { break }
            let name = String(rest[rest.index(after: open)..<close])
            guard let schema = remote.schema(of: name) else { throw MissingExtension(name: name) }
            result += rest[..<open] + schema
            rest = rest[rest.index(after: close)...]
        }
        return result + rest
    }
}

/// An extension a statement needs that is not installed on that server.
struct MissingExtension: Error, Equatable {
    let name: String
}
