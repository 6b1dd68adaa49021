import Logging
import PostgresClient

/// A session of the collector, opened and prepared in one place whatever it is for: the
/// repository (control channel, snapshots, start-up), a remote server's powa database, or one
/// of its other databases (PoWA 5's per-database sources and catalogs).
///
/// Every session gets the same treatment: keepalives and libpq's own connect timeout unless the
/// DSN says otherwise, an `application_name` that names it, a deadline on the whole opening,
/// the pinned settings of `PinnedSettings`, and the map of its extensions' schemas.
struct PoWASession {
    let connection: PostgresConnection
    /// The extensions as they were when read last (at the opening, or `currentExtensions`).
    var extensions: InstalledExtensions

    /// Opens a session with `configuration` and prepares it; the connection is closed if the
    /// preparation fails.
    static func open(_ configuration: ConnectionConfiguration, logger: Logger) async throws -> PoWASession {
        let connection = try await PostgresConnection.connect(configuration, logger: logger)
        let deadline = ContinuousClock.now + configuration.connectTimeout
        do {
            var results: [QueryResult]
            do {
                results = try await connection.results(of: PinnedSettings.sql, deadline: deadline)
            } catch let error as PostgresError where error.sqlState == "57014" && !connection.isClosed {
                // A role's absurdly short statement_timeout cut the round trip (one implicit
                // transaction: none of its SETs stayed). statement_timeout alone first, a few
                // times if need be (a busy server may take a millisecond even for that), then
                // the rest can no longer be cut.
                var attempts = 0
                while true {
                    do {
                        try await connection.execute("SET statement_timeout = 0", deadline: deadline)
                        break
                    } catch let error as PostgresError where error.sqlState == "57014" && attempts < 4 {
                        attempts += 1
                    }
                }
                results = try await connection.results(of: PinnedSettings.sql, deadline: deadline)
            }
            return PoWASession(connection: connection, extensions: InstalledExtensions(rows: results.last?.rows ?? []))
        } catch {
            connection.close()
            throw error
        }
    }

    /// A session to the repository, from the configuration file's DSN (the only connection
    /// string that is expanded).
    static func repository(_ endpoint: RepositoryEndpoint, logger: Logger) async throws -> PoWASession {
        try await open(
            ConnectionConfiguration(
                connectionString: endpoint.dsn,
                defaults: ConnectionDefaults.keepalives(connectTimeout: endpoint.connectTimeout),
                overrides: [.init("application_name", endpoint.applicationName)],
                connectTimeout: endpoint.connectTimeout),
            logger: logger)
    }

    /// A session to a remote server: its registered database, or `database` on the same server
    /// with the same credentials.
    static func remote(
        _ server: RemoteServer, database: String? = nil, applicationName: String, connectTimeout: Duration,
        options: [ConnectionConfiguration.Parameter] = [], logger: Logger
    ) async throws -> PoWASession {
        try await open(
            server.connectionConfiguration(
                database: database, applicationName: applicationName, connectTimeout: connectTimeout, options: options),
            logger: logger)
    }

    /// A session to another database of a remote server (PoWA 5's per-database sources), with
    /// the server's credentials: the pinned settings go in the startup packet's `options`, so
    /// that it is ready without a round trip (its extensions are not read: none are used).
    static func database(
        _ database: String, of server: RemoteServer, serverVersionNumber: Int, applicationName: String,
        connectTimeout: Duration, options: [ConnectionConfiguration.Parameter] = [], logger: Logger
    ) async throws -> PoWASession {
        var configuration = server.connectionConfiguration(
            database: database, applicationName: applicationName, connectTimeout: connectTimeout, options: options)
        let given = (configuration.defaults + configuration.overrides).last { $0.keyword == "options" }?.value
        let pinned = PinnedSettings.startupOptions(serverVersionNumber: serverVersionNumber)
        configuration.overrides += [
            .init("options", given.map { $0 + " " + pinned } ?? pinned), .init("client_encoding", "UTF8"),
        ]
        let connection = try await PostgresConnection.connect(configuration, logger: logger)
        return PoWASession(connection: connection, extensions: InstalledExtensions())
    }

    /// The extensions installed now (one round trip).
    func currentExtensions(deadline: ContinuousClock.Instant?) async throws -> InstalledExtensions {
        InstalledExtensions(rows: try await connection.query(PinnedSettings.extensionsQuery, deadline: deadline).rows)
    }

    func close() { connection.close() }
}
