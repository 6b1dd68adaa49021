import ArgumentParser
import Foundation
import Logging
import PostgresClient
import TestBed

/// The test bed options every benchmark shares.
struct BedOptions: ParsableArguments {
    @Flag(help: "Reuse the bench test bed (/tmp/powa-testbed-bench) if it is already running.")
    var reuse = false

    @Flag(help: "Leave the test bed running at the end (to --reuse it next time).")
    var keep = false
}

/// The benchmarks' private test bed: one repository cluster and one remote cluster, apart from
/// the tests' beds so that a benchmark never disturbs them (nor they it).
enum BenchBed {
    static let name = "bench"
    static let port = 5470
    static let remotes = 1
    static var directory: String { "/tmp/powa-testbed-\(name)" }

    /// Starts (or, with `--reuse`, reuses) the bed, runs `body` with it, then stops it unless
    /// `--keep`, whether `body` succeeded or not.
    static func with<Result>(
        _ options: BedOptions,
        _ body: (TestBed) async throws -> Result
    ) async throws -> Result {
        let bed: TestBed
        if options.reuse, FileManager.default.fileExists(atPath: directory + "/testbed.env") {
            bed = try TestBed.load(directory: directory)
            note("reusing the test bed in \(directory)")
        } else {
            note("starting a test bed in \(directory) (ports \(port)..\(port + remotes))")
            bed = try await TestBed.start(name: name, port: port, remotes: remotes)
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
