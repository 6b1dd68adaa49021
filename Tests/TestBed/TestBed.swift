import Foundation
import Glibc
import Logging
import PostgresClient

/// The real PostgreSQL clusters the tests run against, made by `scripts/testbed`: one PoWA
/// repository cluster and remote clusters with PoWA and its stat extensions.
///
/// `TestBed.shared()` starts the default bed once per test process (or reuses the one
/// `scripts/test` started). Tests that stop or kill a cluster take a private bed with
/// `TestBed.start(name:port:remotes:)`, so they never disturb the others.
public struct TestBed: Sendable {
    /// The PoWA major version of the bed's clusters.
    public let major: PoWAMajor
    /// The directory holding the clusters, their sockets and logs.
    public let directory: String
    /// The Unix socket directory of every cluster.
    public let socketDirectory: String
    /// The repository cluster's port.
    public let repositoryPort: Int
    /// The remote clusters' ports, remote1 first.
    public let remotePorts: [Int]
    /// The data directories of the remote clusters.
    public let remoteDataDirectories: [String]
    /// The repository cluster's data directory.
    public let repositoryDataDirectory: String
    /// PostgreSQL's binaries.
    public let binDirectory: String

    /// The password of the `powa_scram` role, which must authenticate with scram-sha-256 over TCP.
    public static let scramPassword = "scram-secret-pw"

    /// The repository of this checkout (for scripts and the built binaries).
    public static let packageRoot: URL = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url
    }()

    private static let sharedBeds = [PoWAMajor.four: SharedBed(major: .four), .five: SharedBed(major: .five)]

    /// The default test bed of a PoWA major version, started on first use. Tests that add a
    /// database to one of its remotes leave it there: dropped, it could vanish between another
    /// test's PoWA 5 snapshot listing the databases and connecting to it (the bed is removed
    /// at the end of the run anyway).
    public static func shared(_ major: PoWAMajor = .four) async throws -> TestBed {
        try await sharedBeds[major]!.get()
    }

    /// Starts (anew) a private test bed in `/tmp/powa-testbed-<name>` with its own ports
    /// (`port` for PoWA 4; PoWA 5 beds take the ports 100 above, and `-5` after the name).
    /// `knobs` are more of scripts/testbed's variables (`POWA_TESTBED_POWA`, `_PG`...).
    public static func start(
        name: String, port: Int, remotes: Int, major: PoWAMajor = .four, knobs: [String: String] = [:]
    ) async throws -> TestBed {
        let directory = "/tmp/powa-testbed-\(name)\(major.suffix)"
        try await run(
            "scripts/testbed", ["start"],
            environment: [
                "POWA_TESTBED_DIR": directory, "POWA_TESTBED_PORT": "\(port + major.portOffset)",
                "POWA_TESTBED_REMOTES": "\(remotes)", "POWA_TESTBED_MAJOR": "\(major.rawValue)",
            ].merging(knobs) { $1 })
        return try load(directory: directory)
    }

    /// Runs `body` with a private test bed, and stops it afterwards whatever happened.
    public static func withPrivate<T>(
        name: String, port: Int, remotes: Int, major: PoWAMajor = .four, knobs: [String: String] = [:],
        _ body: (TestBed) async throws -> T
    ) async throws -> T {
        let bed = try await start(name: name, port: port, remotes: remotes, major: major, knobs: knobs)
        do {
            let result = try await body(bed)
            try await bed.stop()
            return result
        } catch {
            try? await bed.stop()
            throw error
        }
    }

    /// Stops and removes this test bed.
    public func stop() async throws {
        try await Self.run("scripts/testbed", ["stop"], environment: ["POWA_TESTBED_DIR": directory])
    }

    /// Reads the `testbed.env` that `scripts/testbed start` wrote in `directory`.
    public static func load(directory: String) throws -> TestBed {
        let text = try String(contentsOfFile: directory + "/testbed.env", encoding: .utf8)
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
            if parts.count == 2 { values[parts[0]] = parts[1] }
        }
        func list(_ key: String) -> [String] {
            (values[key] ?? "").split(separator: ",").map(String.init)
        }
        return TestBed(
            major: PoWAMajor(rawValue: Int(values["POWA_TESTBED_MAJOR"] ?? "") ?? 4) ?? .four,
            directory: directory,
            socketDirectory: values["POWA_TESTBED_SOCKETS"] ?? directory + "/sockets",
            repositoryPort: Int(values["POWA_TESTBED_REPO_PORT"] ?? "") ?? 5440,
            remotePorts: list("POWA_TESTBED_REMOTE_PORTS").compactMap { Int($0) },
            remoteDataDirectories: list("POWA_TESTBED_REMOTE_DATA"),
            repositoryDataDirectory: values["POWA_TESTBED_REPO_DATA"] ?? directory + "/repo",
            binDirectory: values["POWA_TESTBED_PGBIN"] ?? "/usr/lib/postgresql/15/bin"
        )
    }

    // MARK: Connections

    /// A key/value connection string to a cluster of this bed over TCP, as superuser.
    public func connectionString(port: Int, database: String = "powa", user: String = "postgres") -> String {
        "host=127.0.0.1 port=\(port) dbname=\(database) user=\(user)"
    }

    /// Connects to a cluster of this bed over TCP, as superuser.
    public func connect(port: Int, database: String = "powa") async throws -> PostgresConnection {
        try await PostgresConnection.connect(
            ConnectionConfiguration(
                connectionString: connectionString(port: port, database: database),
                overrides: [.init("application_name", "powa-tests")]
            ),
            logger: Logger(label: "powa.tests")
        )
    }

    // MARK: Cluster control

    /// Runs `pg_ctl` as the postgres user on a data directory, e.g. `["stop", "-m", "immediate"]`.
    public func pgCtl(_ dataDirectory: String, _ arguments: [String]) async throws {
        let log = directory + "/logs/" + URL(fileURLWithPath: dataDirectory).lastPathComponent + ".log"
        try await Self.run(
            "/usr/sbin/runuser",
            ["-u", "postgres", "--", binDirectory + "/pg_ctl", "-D", dataDirectory, "-l", log, "-w"] + arguments)
    }

    /// Runs a command (relative paths are from the package root) to its end, and throws with
    /// its output when it fails.
    public static func run(_ command: String, _ arguments: [String], environment: [String: String] = [:]) async throws {
        let path = command.hasPrefix("/") ? command : packageRoot.appendingPathComponent(command).path
        let process = try DaemonProcess(path, arguments, environment: environment, directory: "/")
        let code = await process.wait()
        guard code == 0 else {
            throw TestBedError(
                message: "\(command) \(arguments.joined(separator: " ")) exited \(code): \(process.output)")
        }
    }
}

/// The PoWA major versions the collector supports, each with test beds of its own.
public enum PoWAMajor: Int, Sendable, CaseIterable, CustomStringConvertible {
    case four = 4
    case five = 5

    /// Added to a PoWA 4 bed's ports.
    public var portOffset: Int { self == .five ? 100 : 0 }
    /// Added to a PoWA 4 bed's directory.
    public var suffix: String { self == .five ? "-5" : "" }

    public var description: String { "PoWA \(rawValue)" }
}

/// A test bed command that failed.
public struct TestBedError: Error, CustomStringConvertible {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

/// Starts the shared bed once per process. When `POWA_TESTBED_DIR` names a running bed (as
/// `scripts/test` does), it is reused as it is.
private actor SharedBed {
    private var starting: Task<TestBed, any Error>?
    let major: PoWAMajor

    init(major: PoWAMajor) { self.major = major }

    func get() async throws -> TestBed {
        if let starting { return try await starting.value }
        let task = Task { try await start() }
        starting = task
        return try await task.value
    }

    private func start() async throws -> TestBed {
        let environment = ProcessInfo.processInfo.environment
        let directory = (environment["POWA_TESTBED_DIR"] ?? "/tmp/powa-testbed") + major.suffix
        let reusable =
            environment["POWA_TESTBED_REUSE"] == "1"
            && FileManager.default.fileExists(atPath: directory + "/testbed.env")
        if !reusable {
            try await TestBed.run(
                "scripts/testbed", ["start"],
                environment: [
                    "POWA_TESTBED_DIR": directory, "POWA_TESTBED_PORT": "\(5440 + major.portOffset)",
                    "POWA_TESTBED_MAJOR": "\(major.rawValue)",
                ])
        }
        try TestBed.passFile.get()
        return try TestBed.load(directory: directory)
    }
}

extension TestBed {
    /// A `.pgpass` with the scram role's password (every cluster of every bed has that role),
    /// named by `PGPASSFILE` once for the whole process, before the first shared bed is used
    /// (setting the environment later would race libpq).
    fileprivate static let passFile = Result<Void, any Error> {
        let path = "/tmp/powa-testbed-pgpass-\(getpid())"
        // Created 0600: libpq ignores a password file others may read (and so should we).
        unlink(path)
        guard
            FileManager.default.createFile(
                atPath: path, contents: Data("127.0.0.1:*:*:powa_scram:\(scramPassword)\n".utf8),
                attributes: [.posixPermissions: 0o600])
        else { throw TestBedError(message: "could not write \(path)") }
        setenv("PGPASSFILE", path, 1)
        // Gone with the process (the same pid names it).
        atexit { unlink("/tmp/powa-testbed-pgpass-\(getpid())") }
    }
}
