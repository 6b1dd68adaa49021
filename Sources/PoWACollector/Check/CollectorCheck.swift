import Logging
import PostgresClient

/// `powa-collector check`: reaches the repository and every active server exactly as the
/// daemon would (same sessions, same options, same sources), and says for each what works and
/// what does not, with a hint. It takes no snapshot and changes nothing: each source is read
/// (one row) in a transaction that is rolled back.
public struct CollectorCheck {
    let configuration: CollectorConfiguration
    let logger: Logger

    public init(configuration: CollectorConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    var connectTimeout: Duration { .seconds(configuration.connectTimeout) }

    /// Checks the repository, then the active servers (those `server` names, when given: an
    /// id, an alias or `host:port`).
    public func run(server selector: String? = nil) async -> CheckReport {
        let repository: PoWARepository
        do {
            repository = try await PoWARepository.connect(
                to: RepositoryEndpoint(configuration, applicationName: ApplicationName.check), logger: logger)
        } catch {
            return CheckReport(repository: .init(check: "repository", ok: false, detail: "\(error)", hint: Self.hint(for: error)))
        }
        defer { repository.close() }
        guard let powa = repository.extensions.version(of: "powa") else {
            return CheckReport(
                repository: .init(
                    check: "repository", ok: false, detail: "powa is not installed in the repository database",
                    hint: "CREATE EXTENSION powa CASCADE in the repository database"))
        }
        var report = CheckReport(
            repository: .init(
                check: "repository", ok: true, detail: "powa \(powa) (\(repository.isPoWA5 ? "PoWA 5" : "PoWA 4") mode)"))
        let list: ServerList
        do {
            list = try await repository.activeServers(deadline: .now + connectTimeout)
        } catch {
            report.repository = .init(check: "repository", ok: false, detail: "cannot read powa_servers: \(error)")
            return report
        }
        for rejected in list.rejected where selector.map(rejected.matches) ?? true {
            report.servers.append(
                .init(
                    id: rejected.id, name: rejected.alias ?? "?",
                    items: [.init(check: "connection", ok: false, detail: "\(rejected)", hint: "fix the powa_servers row")]))
        }
        for server in list.servers where selector.map({ Self.matches(server, $0) }) ?? true {
            report.servers.append(await check(server, repository: repository))
        }
        return report
    }

    static func matches(_ server: RemoteServer, _ selector: String) -> Bool {
        selector == "\(server.id)" || selector == server.alias || selector == "\(server.hostname):\(server.port)"
    }

    private func check(_ server: RemoteServer, repository: PoWARepository) async -> CheckReport.Server {
        var result = CheckReport.Server(id: server.id, name: server.name(useAlias: true))
        let options = configuration.serverOptions.options(for: server)
        let session: PoWASession
        do {
            session = try await PoWASession.remote(
                server, applicationName: ApplicationName.check, connectTimeout: connectTimeout, options: options,
                logger: logger)
        } catch {
            result.items.append(.init(check: "connection", ok: false, detail: "\(error)", hint: Self.hint(for: error)))
            return result
        }
        defer { session.close() }
        let remote = session.connection
        let deadline = ContinuousClock.now + .seconds(configuration.snapshotTimeout)
        let remoteVersion: Int
        do {
            let row = try await remote.query(
                """
                SELECT pg_catalog.split_part(pg_catalog.current_setting('server_version'), ' ', 1),
                       coalesce((SELECT ssl FROM pg_catalog.pg_stat_ssl WHERE pid = pg_catalog.pg_backend_pid()), false),
                       (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user),
                       pg_catalog.pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'),
                       pg_catalog.current_setting('server_version_num')
                """, deadline: deadline
            ).rows[0]
            remoteVersion = Int(row[4] ?? "") ?? 0
            result.items.append(
                .init(check: "connection", ok: true, detail: "PostgreSQL \(row[0] ?? "?")\(row[1] == "t" ? ", TLS" : "")"))
            result.items.append(
                row[2] == "t" || row[3] == "t"
                    ? .init(check: "privileges", ok: true, detail: row[2] == "t" ? "superuser" : "pg_read_all_stats")
                    : .init(
                        check: "privileges", ok: false,
                        detail: "\(server.username) is neither superuser nor a member of pg_read_all_stats",
                        hint: "GRANT pg_read_all_stats TO \(server.username) (else other roles' statements show no text)"))
        } catch {
            result.items.append(.init(check: "connection", ok: false, detail: "\(error)", hint: nil))
            return result
        }
        let remotePowa = session.extensions.version(of: "powa")
        if let refusal = PoWACompatibility.check(
            remote: remotePowa, repository: repository.extensions.version(of: "powa"), database: server.dbname)
        {
            result.items.append(
                .init(
                    check: "powa", ok: false, detail: refusal.description,
                    hint: refusal.status == .powaMissing
                        ? "CREATE EXTENSION powa CASCADE in database \(server.dbname) of the remote server"
                        : "install the repository's major.minor of powa on the remote server"))
            return result
        }
        result.items.append(.init(check: "powa", ok: true, detail: remotePowa ?? "?"))
        await checkSources(server, session: session, repository: repository, deadline: deadline, into: &result)
        if repository.isPoWA5 {
            await checkDatabases(server, remote: remote, options: options, deadline: deadline, into: &result)
            // (A deadline of their own: the remote's checks may have spent the snapshot's.)
            result.warnings = await ModuleConfigurationCheck(server: server, remoteVersion: remoteVersion)
                .warnings(repository: repository, deadline: .now + .seconds(configuration.snapshotTimeout))
        }
        return result
    }

    /// Each enabled source: its extension installed, its function callable (one row read, in a
    /// transaction rolled back).
    private func checkSources(
        _ server: RemoteServer, session: PoWASession, repository: PoWARepository, deadline: ContinuousClock.Instant,
        into result: inout CheckReport.Server
    ) async {
        let sources: [SnapshotSource]
        do {
            sources = try await repository.snapshotSources(serverID: server.id, deadline: deadline)
        } catch {
            result.items.append(.init(check: "sources", ok: false, detail: "cannot read powa_functions: \(error)"))
            return
        }
        var callable = 0
        for source in sources {
            guard let schema = session.extensions.schema(of: source.schemaOwner) else {
                result.items.append(
                    .init(
                        check: source.querySource, ok: false,
                        detail: "extension \(source.schemaOwner) is not installed on the remote server",
                        hint: "CREATE EXTENSION \(source.schemaOwner) there, or deactivate it for this server in powa"))
                continue
            }
            do {
                try await session.connection.inTransaction(deadline: deadline) {
                    _ = try await session.connection.query(
                        "SELECT * FROM \(schema).\(SQLIdentifier.quote(source.querySource))(0) LIMIT 1", deadline: deadline)
                    throw CheckRollback()
                }
            } catch is CheckRollback {
                callable += 1
            } catch {
                result.items.append(
                    .init(
                        check: source.querySource, ok: false, detail: "\(error)",
                        hint: "is the extension in shared_preload_libraries, and up to date (ALTER EXTENSION ... UPDATE)?"))
                if !session.connection.isHealthy { return }
            }
        }
        result.items.append(
            .init(check: "sources", ok: callable == sources.count, detail: "\(callable) of \(sources.count) callable"))
    }

    /// PoWA 5: every connectable database reached as the snapshots reach it.
    private func checkDatabases(
        _ server: RemoteServer, remote: PostgresConnection, options: [ConnectionConfiguration.Parameter],
        deadline: ContinuousClock.Instant, into result: inout CheckReport.Server
    ) async {
        let names: [String]
        do {
            names = try await remote.query(
                """
                SELECT datname FROM pg_catalog.pg_database
                WHERE datallowconn AND pg_catalog.has_database_privilege(oid, 'CONNECT') ORDER BY datname
                """, deadline: deadline
            ).rows.compactMap { $0[0] }
        } catch {
            result.items.append(.init(check: "databases", ok: false, detail: "\(error)"))
            return
        }
        var failures: [String] = []
        for name in names {
            do {
                let session = try await PoWASession.remote(
                    server, database: name, applicationName: ApplicationName.check, connectTimeout: connectTimeout,
                    options: options, logger: logger)
                session.close()
            } catch {
                failures.append("\(name): \(error)")
            }
        }
        result.items.append(
            .init(
                check: "databases", ok: failures.isEmpty,
                detail: failures.isEmpty
                    ? "\(names.count) reachable"
                    : "\(names.count - failures.count) of \(names.count) reachable; "
                        + failures.joined(separator: "; "),
                hint: failures.isEmpty ? nil : "their catalogs and per-database statistics will be missing"))
    }

    /// What to do about a connection error, from libpq's words.
    static func hint(for error: any Error) -> String? {
        let text = "\(error)"
        if text.contains("password authentication failed") || text.contains("no password supplied") {
            return "check the password (powa_servers.password, .pgpass or the DSN)"
        }
        if text.contains("no pg_hba.conf entry") || text.contains("rejects connection") {
            return "add a pg_hba.conf line for this host and role on that server"
        }
        if text.contains("certificate") || text.contains("SSL") {
            return "check the TLS options (servers in the configuration, or the DSN)"
        }
        if text.contains("does not exist") { return "check the database and role names" }
        if text.contains("refused") || text.contains("could not connect") || text.contains("timeout")
            || text.contains("could not translate host name")
        {
            return "is the server running, and reachable from here (host, port, firewall)?"
        }
        return nil
    }
}

/// Ends the transaction of a source's check: nothing it did is kept.
private struct CheckRollback: Error {}
