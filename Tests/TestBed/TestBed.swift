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
///
/// Ports: the shared beds take 5440-5442 (PoWA 4), 5540-5542 (PoWA 5.3.0) and 6000-6002
/// (PoWA 5.0.2); private beds the ports their tests name (`grep -rn 'port:' Tests`), the beds of
/// PoWA 5.3.0 and PostgreSQL 18 in 6000-6299. `POWA_TESTBED_BASE_PORT` (default 5440) moves every
/// bed's ports by the same amount, and `POWA_TESTBED_DIR` (default `/tmp/powa-testbed`) names
/// every bed's directory (private ones as `<dir>-<name>`): a second checkout's tests run beside
/// the first's with both set, e.g. `POWA_TESTBED_BASE_PORT=6440 POWA_TESTBED_DIR=/tmp/wt-bed`.
public struct TestBed: Sendable {
    /// The PoWA major version of the bed's clusters.
    public let major: PoWAMajor
    /// powa's version on the repository (e.g. `5.3.0`; empty when testbed.env does not say).
    public let powaVersion: String
    /// The repository's PostgreSQL major.
    public let repositoryPostgres: Int
    /// Each remote's PostgreSQL major, remote1 first.
    public let remotePostgres: [Int]
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
    /// The repository's PostgreSQL binaries (and every remote's, but in a bed of two majors).
    public let binDirectory: String
    /// Each remote's PostgreSQL binaries, remote1 first.
    public let remoteBinDirectories: [String]

    /// The password of the `powa_scram` role, which must authenticate with scram-sha-256 over TCP.
    public static let scramPassword = "scram-secret-pw"

    /// The repository of this checkout (for scripts and the built binaries).
    public static let packageRoot: URL = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url
    }()

    private static let sharedBeds = Dictionary(
        uniqueKeysWithValues: BedKind.sharedKinds.map { ($0, SharedBed(kind: $0)) })

    /// The default test bed of a PoWA major version, started on first use. Tests that add a
    /// database to one of its remotes leave it there: dropped, it could vanish between another
    /// test's PoWA 5 snapshot listing the databases and connecting to it (the bed is removed
    /// at the end of the run anyway).
    public static func shared(_ major: PoWAMajor = .four) async throws -> TestBed {
        try await shared(major.bedKind)
    }

    /// The shared test bed of a kind (one of `BedKind.sharedKinds`), started on first use.
    public static func shared(_ kind: BedKind) async throws -> TestBed {
        guard let bed = sharedBeds[kind] else {
            throw TestBedError(message: "no shared bed of \(kind): take a private one")
        }
        return try await bed.get()
    }

    /// What `POWA_TESTBED_BASE_PORT` adds to every bed's ports (0 unless set).
    public static let portShift: Int = {
        guard let base = ProcessInfo.processInfo.environment["POWA_TESTBED_BASE_PORT"].flatMap({ Int($0) }) else {
            return 0
        }
        return base - 5440
    }()

    /// The directory of a bed: `POWA_TESTBED_DIR` (or `/tmp/powa-testbed`) followed by `tail`.
    static func directory(_ tail: String) -> String {
        (ProcessInfo.processInfo.environment["POWA_TESTBED_DIR"] ?? "/tmp/powa-testbed") + tail
    }

    /// Starts (anew) a private test bed in `/tmp/powa-testbed-<name>` with its own ports
    /// (`port` for PoWA 4; PoWA 5 beds take the ports 100 above, and `-5` after the name).
    public static func start(name: String, port: Int, remotes: Int, major: PoWAMajor = .four) async throws -> TestBed {
        try await start(name: name, port: port, remotes: remotes, kind: major.bedKind)
    }

    /// Starts (anew) a private test bed of a kind in `/tmp/powa-testbed-<name><kind's suffix>`,
    /// its repository on `port` plus the kind's offset, its remotes on the next ports.
    /// `settings`: more of `scripts/testbed`'s knobs (e.g. `POWA_TESTBED_LISTEN`).
    public static func start(
        name: String, port: Int, remotes: Int, kind: BedKind, settings: [String: String] = [:]
    ) async throws -> TestBed {
        let directory = Self.directory("-\(name)\(kind.suffix)")
        try await run(
            "scripts/testbed", ["start"],
            environment: kind.environment.merging(settings) { $1 }.merging([
                "POWA_TESTBED_DIR": directory, "POWA_TESTBED_PORT": "\(port + kind.portOffset + portShift)",
                "POWA_TESTBED_REMOTES": "\(remotes)",
            ]) { $1 })
        return try load(directory: directory)
    }

    /// Runs `body` with a private test bed, and stops it afterwards whatever happened.
    public static func withPrivate<T>(
        name: String, port: Int, remotes: Int, major: PoWAMajor = .four, _ body: (TestBed) async throws -> T
    ) async throws -> T {
        try await withPrivate(name: name, port: port, remotes: remotes, kind: major.bedKind, body)
    }

    /// Runs `body` with a private test bed of a kind, and stops it afterwards whatever happened.
    public static func withPrivate<T>(
        name: String, port: Int, remotes: Int, kind: BedKind, settings: [String: String] = [:],
        _ body: (TestBed) async throws -> T
    ) async throws -> T {
        let bed = try await start(name: name, port: port, remotes: remotes, kind: kind, settings: settings)
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
        let binDirectory = values["POWA_TESTBED_PGBIN"] ?? "/usr/lib/postgresql/15/bin"
        let repositoryPostgres = Int(values["POWA_TESTBED_PG"] ?? "") ?? 15
        let remotePorts = list("POWA_TESTBED_REMOTE_PORTS").compactMap { Int($0) }
        // (A bed made before the PostgreSQL 18 knobs: one major, one set of binaries.)
        let remotePostgres = list("POWA_TESTBED_REMOTE_PGS").compactMap { Int($0) }
        let remoteBinDirectories = list("POWA_TESTBED_REMOTE_PGBINS")
        return TestBed(
            major: PoWAMajor(rawValue: Int(values["POWA_TESTBED_MAJOR"] ?? "") ?? 4) ?? .four,
            powaVersion: values["POWA_TESTBED_POWA"] ?? "",
            repositoryPostgres: repositoryPostgres,
            remotePostgres: remotePostgres.count == remotePorts.count
                ? remotePostgres : Array(repeating: repositoryPostgres, count: remotePorts.count),
            directory: directory,
            socketDirectory: values["POWA_TESTBED_SOCKETS"] ?? directory + "/sockets",
            repositoryPort: Int(values["POWA_TESTBED_REPO_PORT"] ?? "") ?? 5440,
            remotePorts: remotePorts,
            remoteDataDirectories: list("POWA_TESTBED_REMOTE_DATA"),
            repositoryDataDirectory: values["POWA_TESTBED_REPO_DATA"] ?? directory + "/repo",
            binDirectory: binDirectory,
            remoteBinDirectories: remoteBinDirectories.count == remotePorts.count
                ? remoteBinDirectories : Array(repeating: binDirectory, count: remotePorts.count)
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

    /// Runs `pg_ctl` as the postgres user on a data directory, e.g. `["stop", "-m", "immediate"]`,
    /// with the binaries of that cluster's PostgreSQL.
    public func pgCtl(_ dataDirectory: String, _ arguments: [String]) async throws {
        let log = directory + "/logs/" + URL(fileURLWithPath: dataDirectory).lastPathComponent + ".log"
        let bin = remoteDataDirectories.firstIndex(of: dataDirectory).map { remoteBinDirectories[$0] } ?? binDirectory
        try await Self.run(
            "/usr/sbin/runuser",
            ["-u", "postgres", "--", bin + "/pg_ctl", "-D", dataDirectory, "-l", log, "-w"] + arguments)
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
    public var portOffset: Int { bedKind.portOffset }
    /// Added to a PoWA 4 bed's directory.
    public var suffix: String { bedKind.suffix }

    /// The default bed of this major: Debian 12's PoWA 4.1.4, or powa-archivist 5.0.2, on
    /// PostgreSQL 15.
    public var bedKind: BedKind { self == .five ? .powa5 : .powa4 }

    public var description: String { "PoWA \(rawValue)" }
}

/// What a test bed runs: the PoWA major, powa-archivist's version, the PostgreSQL major of the
/// repository and of each remote (`scripts/testbed`'s knobs), and where its beds go by default.
public struct BedKind: Sendable, Hashable, CustomStringConvertible {
    /// The PoWA major version.
    public let major: PoWAMajor
    /// `POWA_TESTBED_POWA`: powa-archivist's version on every cluster (nil: the major's default).
    public let powa: String?
    /// `POWA_TESTBED_PG`: the repository's PostgreSQL major.
    public let postgres: Int
    /// `POWA_TESTBED_REMOTE_PG`: the remotes' majors, the i-th for remote<i>, the last for the
    /// remotes past the list (empty: the repository's).
    public let remotePostgres: [Int]
    /// Added to a bed's ports (the shared bed's: 5440 + offset).
    public let portOffset: Int
    /// Added to a bed's directory.
    public let suffix: String

    public init(
        major: PoWAMajor, powa: String? = nil, postgres: Int = 15, remotePostgres: [Int] = [], portOffset: Int = 0,
        suffix: String = ""
    ) {
        self.major = major
        self.powa = powa
        self.postgres = postgres
        self.remotePostgres = remotePostgres
        self.portOffset = portOffset
        self.suffix = suffix
    }

    /// Debian 12's PoWA 4.1.4 on PostgreSQL 15 (ports 5440 on, `/tmp/powa-testbed`).
    public static let powa4 = BedKind(major: .four)
    /// powa-archivist 5.3.0, the release users install, on PostgreSQL 15 (ports 5540 on, `-5`):
    /// the bed of every PoWA 5 test (`PoWAMajor.five`).
    public static let powa5 = BedKind(major: .five, powa: "5.3.0", portOffset: 100, suffix: "-5")
    /// powa-archivist 5.0.2 on PostgreSQL 15 (ports 6000 on, `-5.0.2`), for the PoWA 5 suite and
    /// powa-web 5.0.2.
    public static let powa502 = BedKind(major: .five, powa: "5.0.2", portOffset: 560, suffix: "-5.0.2")

    /// The kinds with a shared bed.
    public static let sharedKinds: [BedKind] = [.powa4, .powa5, .powa502]

    /// powa-archivist 5.3.0 with PostgreSQL `postgres` on the repository and `remotes` (one per
    /// remote, the last for the others) on the remotes, for a private bed (ports as given).
    public static func postgres(_ postgres: Int, remotes: [Int]) -> BedKind {
        BedKind(major: .five, powa: "5.3.0", postgres: postgres, remotePostgres: remotes)
    }

    /// `scripts/testbed`'s environment for this kind.
    /// Every knob set (empty for the script's default), whatever the tests' own environment says.
    var environment: [String: String] {
        [
            "POWA_TESTBED_MAJOR": "\(major.rawValue)", "POWA_TESTBED_POWA": powa ?? "",
            "POWA_TESTBED_PG": "\(postgres)",
            "POWA_TESTBED_REMOTE_PG": remotePostgres.map(String.init).joined(separator: ","),
        ]
    }

    public var description: String {
        let version = powa ?? (major == .five ? "5.0.2" : "4.1.4")
        let remotes = remotePostgres.isEmpty ? "" : ", remotes \(remotePostgres.map(String.init).joined(separator: ","))"
        return "powa \(version), PostgreSQL \(postgres)\(remotes)"
    }
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
    let kind: BedKind

    init(kind: BedKind) { self.kind = kind }

    func get() async throws -> TestBed {
        if let starting { return try await starting.value }
        let task = Task { try await start() }
        starting = task
        return try await task.value
    }

    private func start() async throws -> TestBed {
        let environment = ProcessInfo.processInfo.environment
        let directory = TestBed.directory(kind.suffix)
        let reusable =
            environment["POWA_TESTBED_REUSE"] == "1"
            && FileManager.default.fileExists(atPath: directory + "/testbed.env")
        if !reusable {
            try await TestBed.run(
                "scripts/testbed", ["start"],
                environment: kind.environment.merging([
                    "POWA_TESTBED_DIR": directory,
                    "POWA_TESTBED_PORT": "\(5440 + kind.portOffset + TestBed.portShift)",
                ]) { $1 })
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
