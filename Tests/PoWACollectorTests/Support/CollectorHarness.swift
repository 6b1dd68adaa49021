import Foundation
import Logging
import PoWACollector
import PostgresClient
import ServiceLifecycle
import Synchronization
import TestBed
import TestWaiting
import Testing

/// A PoWA repository database of its own on a test bed's repository cluster, so that tests
/// running at the same time never share `powa_servers` or snapshots.
struct ScratchRepository {
    let bed: TestBed
    let database: String

    private static let counter = Atomic<Int>(0)

    /// Creates `powa` (and `pg_track_settings`) in a new database.
    static func create(on bed: TestBed) async throws -> ScratchRepository {
        let number = counter.add(1, ordering: .relaxed).newValue
        let database = "repo_\(ProcessInfo.processInfo.processIdentifier)_\(number)"
        let admin = try await bed.connect(port: bed.repositoryPort, database: "postgres")
        try await admin.execute("CREATE DATABASE \(database)")
        admin.close()
        let repository = ScratchRepository(bed: bed, database: database)
        let connection = try await repository.connect()
        defer { connection.close() }
        try await connection.execute("CREATE EXTENSION powa CASCADE; CREATE EXTENSION pg_track_settings")
        return repository
    }

    var dsn: String { bed.connectionString(port: bed.repositoryPort, database: database) }

    func connect() async throws -> PostgresConnection {
        try await bed.connect(port: bed.repositoryPort, database: database)
    }

    /// Registers a remote server and returns its id.
    @discardableResult
    func register(
        port: Int, hostname: String = "127.0.0.1", alias: String? = nil, dbname: String = "powa",
        username: String = "postgres", password: String? = nil, frequency: Int = 5,
        extensions: String = "{pg_stat_kcache,pg_qualstats,pg_wait_sampling,pg_track_settings}"
    ) async throws -> Int {
        let connection = try await connect()
        defer { connection.close() }
        _ = try await connection.query(
            """
            SELECT powa_register_server(hostname => $1, port => $2::int, alias => $3, username => $4,
                password => $5, dbname => $6, frequency => $7::int, extensions => $8::text[])
            """, [hostname, "\(port)", alias, username, password, dbname, "\(frequency)", extensions])
        return try await connection.query(
            "SELECT id FROM powa_servers WHERE hostname = $1 AND port = $2::int", [hostname, "\(port)"]
        ).rows[0].decode(0, as: Int.self)
    }

    /// Adds a global snapshot source to a server: a row of `powa_functions` in PoWA 4, a
    /// module in PoWA 5 (where `powa_functions` is a view over modules and extensions).
    func addSource(serverID: Int, module: String, querySource: String, snapshotFunction: String, priority: Int = 100)
        async throws
    {
        if bed.major == .five {
            try await execute(
                """
                INSERT INTO powa_modules (module, min_version) VALUES ('\(module)', 0);
                INSERT INTO powa_module_functions (module, operation, function_name, query_source)
                VALUES ('\(module)', 'snapshot', '\(snapshotFunction)', '\(querySource)');
                INSERT INTO powa_module_config (srvid, module) VALUES (\(serverID), '\(module)');
                """)
        } else {
            try await execute(
                """
                INSERT INTO powa_functions (srvid, module, operation, function_name, query_source, added_manually, enabled, priority)
                VALUES (\(serverID), '\(module)', 'snapshot', '\(snapshotFunction)', '\(querySource)', true, true, \(priority))
                """)
        }
    }

    /// The first column of the first row of a query on this repository.
    func value(_ sql: String, _ parameters: [String?] = []) async throws -> String? {
        let connection = try await connect()
        defer { connection.close() }
        return try await connection.query(sql, parameters).rows.first?[0]
    }

    /// Runs statements on this repository.
    func execute(_ sql: String) async throws {
        let connection = try await connect()
        defer { connection.close() }
        try await connection.execute(sql)
    }

    func int(_ sql: String, _ parameters: [String?] = []) async throws -> Int {
        Int(try await value(sql, parameters) ?? "") ?? 0
    }

    /// `powa_snapshot_metas.snapts` of a server as seconds since the epoch (nil: -infinity).
    func snapts(_ serverID: Int) async throws -> Double? {
        let text = try await value(
            "SELECT CASE WHEN snapts = '-infinity' THEN NULL ELSE extract(epoch FROM snapts) END FROM powa_snapshot_metas WHERE srvid = $1",
            ["\(serverID)"])
        return text.flatMap(Double.init)
    }

    /// `powa_snapshot_metas.errors` of a server, joined by newlines ("" when NULL).
    func errors(_ serverID: Int) async throws -> String {
        try await value(
            "SELECT coalesce(array_to_string(errors, E'\\n'), '') FROM powa_snapshot_metas WHERE srvid = $1",
            ["\(serverID)"]) ?? ""
    }

    /// Waits until the server's `powa_snapshot_metas.errors` contains `text`; returns them.
    func waitForErrors(_ serverID: Int, containing text: String, timeout: Duration = .seconds(15)) async throws -> String {
        var errors = ""
        _ = try await eventually(timeout: timeout) {
            errors = try await self.errors(serverID)
            return errors.contains(text)
        }
        return errors
    }

    /// Waits until the server's snapts has moved past `after` `count` times; returns each value.
    func waitForSnapshots(
        _ serverID: Int, count: Int, after start: Double? = nil, timeout: Duration = .seconds(60)
    ) async throws -> [Double] {
        var seen: [Double] = []
        var last = start
        if last == nil { last = try await snapts(serverID) }
        let complete = try await eventually(timeout: timeout) {
            if let current = try await snapts(serverID), current != last {
                seen.append(current)
                last = current
            }
            return seen.count >= count
        }
        if !complete {
            Issue.record("server \(serverID): only \(seen.count) of \(count) snapshots within \(timeout)")
        }
        return seen
    }
}

/// A collector running in this process, inside a ServiceGroup, logging into a capture.
final class RunningCollector: Sendable {
    let collector: Collector
    let logs = LogCapture()
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    /// The configuration file the collector re-reads on RELOAD.
    let configurationPath: String

    init(_ configuration: CollectorConfiguration) {
        let logger = logs.logger(label: "powa-collector", level: .debug)
        configurationPath = "/tmp/powa-test-\(UInt64.random(in: 0...UInt64.max)).conf"
        try? configuration.json.write(toFile: configurationPath, atomically: true, encoding: .utf8)
        collector = Collector(
            configuration: configuration, configurationSource: ConfigurationSource(commandLinePath: configurationPath),
            logger: logger)
        group = ServiceGroup(
            configuration: .init(services: [.init(service: collector)], logger: Logger(label: "tests-lifecycle")))
        let group = self.group
        task = Task { try await group.run() }
    }

    convenience init(repository: ScratchRepository, configure: (inout CollectorConfiguration) -> Void = { _ in }) {
        var configuration = CollectorConfiguration(repositoryDSN: repository.dsn)
        configuration.connectTimeout = 3
        // Generous: dozens of tests snapshot at once on 2 cores (PoWA 5 first snapshots import
        // catalogs); tests of the timeout itself set their own.
        configuration.snapshotTimeout = 60
        configure(&configuration)
        self.init(configuration)
    }

    /// Shuts the collector down gracefully and waits for it.
    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
    }

    /// Waits until `count` log lines contain `text`.
    func waitForLog(count: Int, of text: String, timeout: Duration = .seconds(30)) async throws -> Bool {
        try await eventually(timeout: timeout) { self.logs.lines.filter { $0.contains(text) }.count >= count }
    }

    /// Waits until a log line contains `text`.
    func waitForLog(_ text: String, timeout: Duration = .seconds(30)) async throws -> Bool {
        try await waitForLog(count: 1, of: text, timeout: timeout)
    }
}

extension CollectorConfiguration {
    /// `servers` as JSON.
    var serversJSON: String {
        let data = try? JSONSerialization.data(withJSONObject: serverOptions.bySelector, options: [.sortedKeys])
        return data.map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    /// `spool` as JSON: `false` when off.
    var spoolJSON: String {
        guard let spool else { return "false" }
        return "{\"directory\": \"\(spool.directory)\", \"max_bytes\": \(spool.maxBytes), \"max_age\": \(spool.maxAge)}"
    }

    /// This configuration as a configuration file.
    var json: String {
        let dsn = repositoryDSN.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        return """
            {"repository": {"dsn": "\(dsn)"}, "debug": \(debug), "use_server_alias": \(useServerAlias),
             "connect_timeout": \(connectTimeout), "snapshot_timeout": \(snapshotTimeout),
             "max_concurrent_snapshots": \(maxConcurrentSnapshots), "skip_known_query_texts": \(skipKnownQueryTexts),
             "servers": \(serversJSON), "spool": \(spoolJSON)\(httpListen.map { ", \"http\": {\"listen\": \"\($0)\"}" } ?? "")}
            """
    }
}
