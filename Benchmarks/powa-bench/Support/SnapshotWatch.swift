import PostgresClient

/// Tells, during a run, when every server's first snapshot of the run has landed: the start of
/// the steady state. With `skip_known_query_texts`, a server's first snapshot sends every
/// query text (the repository does not know the statements yet) and costs the repository as
/// much as the Python collector's do; a deployment pays it once per server, not at every
/// snapshot, so the steady state is measured apart.
///
/// It looks at the run's snapshot log on one connection opened before the run: a connection
/// per look would be a new repository backend each time, the very cost being measured.
final class SnapshotWatch {
    private let connection: PostgresConnection
    private let servers: Int
    /// The repository's clock when the watch started: snapshots logged since count.
    private let since: Double

    init(_ repository: RunRepository) async throws {
        connection = try await BenchBed.connect(repository.connectionString)
        servers = repository.servers.count
        since = try await connection.query("SELECT extract(epoch FROM clock_timestamp())::float8").rows[0]
            .decode(0, as: Double.self)
    }

    /// Whether every server has a snapshot logged since the watch started.
    func everyServerSnapshotted() async throws -> Bool {
        let rows = try await connection.query(
            "SELECT count(DISTINCT srvid) FROM public.bench_snapshots WHERE logged >= to_timestamp($1::float8)",
            [String(since)]
        ).rows
        return try rows[0].decode(0, as: Int.self) >= servers
    }

    func close() { connection.close() }
}
