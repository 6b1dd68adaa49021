/// The session settings every session of the collector pins right after connecting, whatever
/// the server, database or role defaults say (`ALTER ROLE ... SET`, `ALTER DATABASE ... SET`,
/// `postgresql.conf`).
///
/// COPY text travels from a remote to the repository as bytes: both sides must print and parse
/// it the same way. What changes COPY text is the client encoding, the date, time and interval
/// output styles, the float precision and the bytea format; `standard_conforming_strings`
/// changes how our own literals parse. Statement time is bounded by the collector's own
/// deadlines (`snapshot_timeout`, `connect_timeout`), so a role's `statement_timeout`,
/// `idle_in_transaction_session_timeout` or (PostgreSQL 17+) `transaction_timeout` must not cut
/// a snapshot short (a snapshot's repository transaction waits while databases are read); each
/// transaction bounds its own idle time instead, by its deadline (`inTransaction`), so that a
/// frozen collector never holds a server's locks or xmin horizon. `lock_timeout` is 2 s as in
/// the Python collector, so that a lock held on a PoWA table never holds a snapshot or a
/// control request for long.
///
/// PoWA 5 schema-qualifies every name and expects `search_path` = `pg_catalog`; so do
/// sessions to databases without powa (PoWA 5's per-database sources). PoWA 4 objects resolve
/// their own names through `search_path`, which is then left as it is.
enum PinnedSettings {
    /// The settings and their values, in the order they are set.
    static let values: [(name: String, value: String)] = [
        // First: each statement of the one round trip runs under the previous settings, and a
        // role's statement_timeout of a millisecond would cut the next ones short.
        ("statement_timeout", "0"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, YMD"),
        ("IntervalStyle", "postgres"),
        ("extra_float_digits", "3"),
        ("bytea_output", "hex"),
        ("standard_conforming_strings", "on"),
        ("idle_in_transaction_session_timeout", "0"),
        ("lock_timeout", "2s"),
    ]

    /// The settings as a startup packet's `options` (`-c name=value`), for a session to a
    /// database without powa (PoWA 5's per-database sources: `search_path` is `pg_catalog`);
    /// `client_encoding` is libpq's own keyword. `transaction_timeout` exists from PostgreSQL
    /// 17 on, and would fail the connection before.
    static func startupOptions(serverVersionNumber: Int) -> String {
        var settings = values.filter { $0.name != "client_encoding" }
        settings.append(("search_path", "pg_catalog"))
        if serverVersionNumber >= 170_000 { settings.append(("transaction_timeout", "0")) }
        // (libpq splits the options at spaces: values have none but DateStyle's.)
        return settings.map { "-c \($0.name)=\($0.value.replacingOccurrences(of: " ", with: ""))" }
            .joined(separator: " ")
    }

    /// The installed extensions: name, schema, version.
    static let extensionsQuery = """
        SELECT e.extname, n.nspname, e.extversion
        FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
        """

    /// One round trip: the settings, `search_path` when powa is absent or 5+, then the installed
    /// extensions as the last result.
    static let sql: String = {
        let settings = values.map { "SET \($0.name) = '\($0.value)';" }.joined(separator: "\n")
        return settings + "\n" + """
            SELECT pg_catalog.set_config(name, '0', false) FROM pg_catalog.pg_settings
            WHERE name = 'transaction_timeout';
            SELECT pg_catalog.set_config('search_path', 'pg_catalog', false)
            WHERE coalesce((SELECT substring(extversion FROM '^[0-9]+')::int
                            FROM pg_catalog.pg_extension WHERE extname = 'powa'), 5) >= 5;
            """ + "\n" + extensionsQuery
    }()
}
