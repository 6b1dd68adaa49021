/// The collector's settings: the Python powa-collector's JSON file, same keys, plus a few
/// settings of our own, each with a default that suits a production setup.
///
/// ```json
/// {
///     "repository": { "dsn": "postgresql://powa@repo:5432/powa" },
///     "debug": false,
///     "use_server_alias": false
/// }
/// ```
public struct CollectorConfiguration: Sendable, Equatable {
    /// The libpq connection string of the repository (`repository.dsn`, required).
    public var repositoryDSN: String
    /// Log at debug level (`debug`, default false).
    public var debug: Bool = false
    /// `text` or `json` lines on stderr (`log_format`, default text; read at start only).
    public var logFormat: LogFormat = .text
    /// Name workers by their alias rather than host:port in logs (`use_server_alias`).
    public var useServerAlias: Bool = false
    /// Seconds allowed to establish any connection (`connect_timeout`, default 10).
    public var connectTimeout: Double = 10
    /// Seconds one snapshot may take before it is cancelled and reported
    /// (`snapshot_timeout`, default 60).
    public var snapshotTimeout: Double = 60
    /// How many snapshots may write into the repository at once (`max_concurrent_snapshots`,
    /// default 4).
    public var maxConcurrentSnapshots: Int = 4
    /// Send the repository the text of a statement only while it does not know the statement
    /// yet (`skip_known_query_texts`, default true): see `StatementTextElider`. False sends
    /// every text at every snapshot, as the Python collector does.
    public var skipKnownQueryTexts: Bool = true
    /// Where the HTTP endpoint (metrics, health) listens (`http.listen`; none by default).
    /// Read at start-up.
    public var httpListen: HTTPAddress?
    /// Extra libpq keywords for remote servers (`servers`): see `ServerConnectionOptions`.
    public var serverOptions = ServerConnectionOptions()
    /// Where snapshots wait while the repository is down (`spool`; read at start-up). A
    /// configuration file without `spool` gets `SpoolSettings()`; nil spools nothing.
    public var spool: SpoolSettings?

    public init(repositoryDSN: String) {
        self.repositoryDSN = repositoryDSN
    }
}
