import Logging
import PostgresClient

/// The PoWA repository database, seen through one connection: every statement the collector
/// runs there. Values always travel as parameters; identifiers are quoted.
struct PoWARepository {
    let connection: PostgresConnection

    /// Connects to the repository and prepares the session (see `SessionSetup`).
    static func connect(
        dsn: String,
        applicationName: String,
        connectTimeout: Duration,
        logger: Logger
    ) async throws -> PoWARepository {
        let configuration = ConnectionConfiguration(
            connectionString: dsn,
            defaults: ConnectionDefaults.keepalives(connectTimeout: connectTimeout),
            overrides: [.init("application_name", applicationName)],
            connectTimeout: connectTimeout
        )
        let connection = try await PostgresConnection.connect(configuration, logger: logger)
        do {
            try await SessionSetup.prepare(connection, deadline: .now + connectTimeout)
        } catch {
            connection.close()
            throw error
        }
        return PoWARepository(connection: connection)
    }

    func close() { connection.close() }

    /// The version of the `powa` extension, nil when it is not installed in this database.
    func powaVersion() async throws -> String? {
        try await connection.query("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'powa'")
            .rows.first?[0]
    }

    /// The active remote servers (`id > 0 AND frequency > 0`), and the rows that cannot be
    /// used, each with the reason.
    func activeServers() async throws -> ServerList {
        let result = try await connection.query(
            """
            SELECT id, hostname, alias, port, username, password, dbname, frequency
            FROM public.powa_servers
            WHERE id > 0 AND frequency > 0
            ORDER BY id
            """)
        var list = ServerList()
        for row in result.rows {
            do {
                list.servers.append(try RemoteServer(row: row))
            } catch {
                list.rejected.append((id: (try? row.decode(0, as: Int.self)) ?? -1, reason: error.description))
            }
        }
        return list
    }

    /// The enabled snapshot sources of a server, in the order powa runs them.
    func snapshotSources(serverID: Int) async throws -> [SnapshotSource] {
        try await connection.query(
            """
            SELECT module, query_source, query_cleanup
            FROM public.powa_functions
            WHERE operation = 'snapshot' AND enabled AND srvid = $1 AND query_source IS NOT NULL
            ORDER BY priority, module, query_source
            """, ["\(serverID)"]
        ).rows.map { row in
            SnapshotSource(module: row[0] ?? "", querySource: row[1] ?? "", queryCleanup: row[2])
        }
    }

    /// How long ago the server's last snapshot was taken; `.missing` when it has no
    /// `powa_snapshot_metas` row, `.never` when `snapts` is still `-infinity`.
    func lastSnapshot(serverID: Int) async throws -> LastSnapshot {
        let rows = try await connection.query(
            """
            SELECT CASE WHEN snapts = '-infinity' THEN NULL
                        ELSE extract(epoch FROM clock_timestamp() - snapts)::float8 END
            FROM public.powa_snapshot_metas WHERE srvid = $1
            """, ["\(serverID)"]
        ).rows
        guard let row = rows.first else { return .missing }
        guard let seconds = try row.decodeIfPresent(0, as: Double.self) else { return .never }
        return .secondsAgo(seconds)
    }

    /// Turns the staged rows into history; returns the number of errors powa met.
    func takeSnapshot(serverID: Int, deadline: ContinuousClock.Instant?) async throws -> Int {
        try await connection.query("SELECT public.powa_take_snapshot($1)", ["\(serverID)"], deadline: deadline)
            .rows[0].decode(0, as: Int.self)
    }

    /// Appends errors to what powa-web shows for the server (`powa_snapshot_metas.errors`).
    func appendErrors(serverID: Int, _ errors: [String], deadline: ContinuousClock.Instant? = nil) async throws {
        for error in errors {
            _ = try await connection.query(
                "UPDATE public.powa_snapshot_metas SET errors = array_append(errors, $2) WHERE srvid = $1",
                ["\(serverID)", error], deadline: deadline)
        }
    }
}

/// The result of reading `powa_servers`.
struct ServerList {
    var servers: [RemoteServer] = []
    var rejected: [(id: Int, reason: String)] = []
}

/// What `powa_snapshot_metas` says of a server's last snapshot.
enum LastSnapshot: Equatable {
    case missing
    case never
    case secondsAgo(Double)
}

extension RemoteServer {
    /// Reads a `powa_servers` row, refusing values no connection could use.
    init(row: PostgresRow) throws(ServerRowError) {
        do {
            let id = try row.decode(0, as: Int.self)
            let hostname = try row.decode(1, as: String.self)
            let port = try row.decode(3, as: Int.self)
            let username = try row.decode(4, as: String.self)
            let dbname = try row.decode(6, as: String.self)
            let frequency = try row.decode(7, as: Int.self)
            guard !hostname.isEmpty else { throw ServerRowError("server \(id): empty hostname") }
            guard (1...65535).contains(port) else { throw ServerRowError("server \(id): invalid port \(port)") }
            guard !username.isEmpty else { throw ServerRowError("server \(id): empty username") }
            guard !dbname.isEmpty else { throw ServerRowError("server \(id): empty dbname") }
            self.init(
                id: id, hostname: hostname, alias: row[2], port: port, username: username,
                password: row[5], dbname: dbname, frequency: frequency)
        } catch let error as ServerRowError {
            throw error
        } catch {
            throw ServerRowError("invalid powa_servers row: \(error)")
        }
    }
}

/// A `powa_servers` row the collector cannot use.
struct ServerRowError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
