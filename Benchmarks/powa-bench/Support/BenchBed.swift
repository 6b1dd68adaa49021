import ArgumentParser
import Foundation
import Logging
import PostgresClient
import TestBed

/// The test bed options every benchmark shares.
struct BedOptions: ParsableArguments {
    @Flag(help: "Reuse the bench test bed (/tmp/powa-testbed-bench-<name>) if it is already running.")
    var reuse = false

    @Flag(help: "Leave the test bed running at the end (to --reuse it next time).")
    var keep = false
}

/// A private test bed of a benchmark: where, on which ports, and how its clusters differ from
/// the tests' (through the optional knobs of `scripts/testbed`). As the tests' beds, it honours
/// `POWA_TESTBED_DIR` and `POWA_TESTBED_BASE_PORT` (`TestBed`), so that a second checkout's
/// benchmarks run beside the first's.
struct BedSpec: Sendable {
    /// The bed lives in `<POWA_TESTBED_DIR or /tmp/powa-testbed>-<name>`.
    var name: String
    /// The repository's port before `POWA_TESTBED_BASE_PORT` moves it; the remotes' are the next ones.
    var port: Int
    var remotes: Int
    /// Extra postgresql.conf lines of the remotes (`POWA_TESTBED_REMOTE_CONF`).
    var remoteConfiguration: [String] = []
    /// Extra postgresql.conf lines of the repository (`POWA_TESTBED_REPO_CONF`).
    var repositoryConfiguration: [String] = []
    /// listen_addresses (`POWA_TESTBED_LISTEN`); when set, pg_hba also trusts 127.0.0.0/8.
    var listenAddresses: String?
    /// The PoWA major version of every cluster (`POWA_TESTBED_MAJOR`).
    var major: PoWAMajor = .four

    var directory: String {
        (ProcessInfo.processInfo.environment["POWA_TESTBED_DIR"] ?? "/tmp/powa-testbed") + "-\(name)"
    }

    /// The repository's port, moved by `POWA_TESTBED_BASE_PORT`.
    var repositoryPort: Int { port + TestBed.portShift }

    /// The bed of `copy-pipe`: one repository cluster and one remote cluster.
    static let copyPipe = BedSpec(name: "bench", port: 5470, remotes: 1)

    /// The environment of `scripts/testbed start` for this bed.
    var environment: [String: String] {
        var environment = [
            "POWA_TESTBED_DIR": directory, "POWA_TESTBED_PORT": "\(repositoryPort)", "POWA_TESTBED_REMOTES": "\(remotes)",
            "POWA_TESTBED_MAJOR": "\(major.rawValue)",
        ]
        if !remoteConfiguration.isEmpty {
            environment["POWA_TESTBED_REMOTE_CONF"] = remoteConfiguration.joined(separator: "\n")
        }
        if !repositoryConfiguration.isEmpty {
            environment["POWA_TESTBED_REPO_CONF"] = repositoryConfiguration.joined(separator: "\n")
        }
        if let listenAddresses { environment["POWA_TESTBED_LISTEN"] = listenAddresses }
        return environment
    }
}

/// The benchmarks' private test beds, apart from the tests' beds so that a benchmark never
/// disturbs them (nor they it).
enum BenchBed {
    /// Starts (or, with `--reuse`, reuses) the bed, runs `body` with it, then stops it unless
    /// `--keep`, whether `body` succeeded or not.
    static func with<Result>(
        _ options: BedOptions,
        _ spec: BedSpec = .copyPipe,
        _ body: (TestBed) async throws -> Result
    ) async throws -> Result {
        let bed: TestBed
        let directory = spec.directory
        if options.reuse, FileManager.default.fileExists(atPath: directory + "/testbed.env") {
            bed = try TestBed.load(directory: directory)
            note("reusing the test bed in \(directory)")
        } else {
            note("starting a test bed in \(directory) (ports \(spec.repositoryPort)..\(spec.repositoryPort + spec.remotes))")
            try await TestBed.run("scripts/testbed", ["start"], environment: spec.environment)
            bed = try TestBed.load(directory: directory)
        }
        guard bed.remotePorts.count == spec.remotes else {
            throw BenchError(
                "the bed in \(directory) has \(bed.remotePorts.count) remote(s), not \(spec.remotes): run without --reuse")
        }
        guard bed.major == spec.major else {
            throw BenchError("the bed in \(directory) runs \(bed.major), not \(spec.major): run without --reuse")
        }
        let result: Result
        do {
            result = try await body(bed)
        } catch {
            if !options.keep { try? await bed.stop() }
            throw error
        }
        if options.keep {
            note("test bed kept in \(directory); --reuse it next time")
        } else {
            try await bed.stop()
        }
        return result
    }

    /// A connection to a cluster of the bed from a connection string, with the benchmarks'
    /// application name.
    static func connect(_ connectionString: String) async throws -> PostgresConnection {
        try await PostgresConnection.connect(
            ConnectionConfiguration(
                connectionString: connectionString,
                overrides: [.init("application_name", "powa-bench")]
            ),
            logger: Logger(label: "powa.bench")
        )
    }
}

/// A progress line on standard error, so that standard output holds only results.
func note(_ message: String) {
    FileHandle.standardError.write(Data(("powa-bench: " + message + "\n").utf8))
}

/// A benchmark that could not run or whose result is wrong.
struct BenchError: Error, CustomStringConvertible {
    let message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}
