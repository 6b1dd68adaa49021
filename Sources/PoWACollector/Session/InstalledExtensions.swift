import PostgresClient

/// The extensions installed in one database, with their schema and version, as read when the
/// session opened. PoWA and every stats extension may live in any schema: each statement
/// naming one of their objects qualifies it with the schema found here, on that server.
struct InstalledExtensions: Sendable, Equatable {
    struct Extension: Sendable, Equatable {
        /// The schema, unquoted.
        let schema: String
        let version: String
    }

    private(set) var byName: [String: Extension] = [:]

    init(_ byName: [String: Extension] = [:]) { self.byName = byName }

    /// From rows of (extname, nspname, extversion).
    init(rows: [PostgresRow]) {
        for row in rows {
            if let name = row[0], let schema = row[1], let version = row[2] {
                byName[name] = Extension(schema: schema, version: version)
            }
        }
    }

    /// The quoted schema of an extension, ready to prefix a name; nil when it is not installed.
    func schema(of name: String) -> String? {
        byName[name].map { SQLIdentifier.quote($0.schema) }
    }

    func version(of name: String) -> String? { byName[name]?.version }

    /// The version of powa, nil when it is not installed.
    var powaVersion: PoWAVersion? { version(of: "powa").flatMap(PoWAVersion.init) }

    /// Whether a session to this database pins `search_path` to `pg_catalog` (see
    /// `PinnedSettings`): powa 5 or later, or no powa.
    var pinsCatalogSearchPath: Bool { (powaVersion?.major ?? 5) >= 5 }

    /// `schema.name`, both quoted, for an object of `powa`; `public` when powa is absent (the
    /// statement then fails with a clear "does not exist").
    func powa(_ name: String) -> String {
        (schema(of: "powa") ?? "public") + "." + SQLIdentifier.quote(name)
    }
}
