import PostgresClient

/// A monitored server: one row of the repository's `powa_servers` with `id > 0`.
public struct RemoteServer: Sendable, Hashable {
    /// `powa_servers.id`, the srvid of every PoWA table.
    public let id: Int
    public var hostname: String
    public var alias: String?
    public var port: Int
    public var username: String
    /// NULL means libpq's own sources: `.pgpass`, `PGPASSFILE`, service files, certificates.
    public var password: String?
    public var dbname: String
    /// Seconds between snapshots; -1 (or any value <= 0) means deactivated.
    public var frequency: Int

    public init(
        id: Int, hostname: String, alias: String? = nil, port: Int, username: String,
        password: String? = nil, dbname: String, frequency: Int
    ) {
        self.id = id
        self.hostname = hostname
        self.alias = alias
        self.port = port
        self.username = username
        self.password = password
        self.dbname = dbname
        self.frequency = frequency
    }

    /// Whether the collector snapshots this server.
    public var isActive: Bool { id > 0 && frequency > 0 }

    /// How logs name the worker: `host:port`, or the alias when asked for and set.
    public func name(useAlias: Bool) -> String {
        if useAlias, let alias, !alias.isEmpty { return alias }
        return "\(hostname):\(port)"
    }

    /// What a worker's connection depends on: a change of any of these restarts the worker.
    public var connectionSettings: [String?] {
        [hostname, "\(port)", username, password, dbname]
    }

    /// The libpq parameters of a connection to this server (its registered database, or
    /// `database`), as keywords: never a string built by pasting, and no value is expanded as a
    /// connection string, so no value can inject another parameter. `options` (the
    /// configuration's `servers`) come after the collector's defaults, before the server's own.
    public func connectionConfiguration(
        database: String? = nil, applicationName: String, connectTimeout: Duration,
        options: [ConnectionConfiguration.Parameter] = []
    ) -> ConnectionConfiguration {
        var parameters: [ConnectionConfiguration.Parameter] = [
            .init("host", hostname), .init("port", "\(port)"), .init("user", username),
            .init("dbname", database ?? dbname), .init("application_name", applicationName),
        ]
        if let password { parameters.append(.init("password", password)) }
        return ConnectionConfiguration(
            defaults: ConnectionDefaults.keepalives(connectTimeout: connectTimeout) + options,
            overrides: parameters,
            connectTimeout: connectTimeout
        )
    }
}
