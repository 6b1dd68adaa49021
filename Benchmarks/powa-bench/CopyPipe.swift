import ArgumentParser
import PostgresClient
import TestBed

/// `powa-bench copy-pipe`: the Swift COPY pipe (`PostgresConnection.pipeCopy`) against
/// `psql -c "COPY ... TO STDOUT" | psql -c "COPY ... FROM STDIN"`, on the same rows between
/// the same two clusters, alternating in the same invocation; then the peak memory of a child
/// process doing only the Swift pipe.
///
/// Both timings cover the whole transfer including connecting: the Swift one connects both
/// connections, pipes and closes them; the psql one starts bash and both psql processes, which
/// connect, and ends when both have exited. The source table is created once (generating the
/// rows is not measured); the destination is truncated (and checkpointed) before each run, and
/// must hold exactly the rows after it.
struct CopyPipe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "copy-pipe",
        abstract: "Swift pipeCopy vs psql | psql: rows/s, and the peak RSS of the Swift pipe."
    )

    @OptionGroup var bedOptions: BedOptions

    @Option(help: "Rows to copy.")
    var rows = 1_000_000

    @Option(help: "Timed runs of each method.")
    var runs = 3

    @Option(help: "Untimed warm-up runs of each method, before the timed ones.")
    var warmup = 1

    @Option(name: .customLong("batch-kib"), help: "pipeCopy's batch size, in KiB.")
    var batchKiB = 256

    /// Targets of the issue.
    static let maximumSlowdown = 1.1
    static let maximumPeakMB = 32.0

    static let sourceTable = "bench_src"
    static let destinationTable = "bench_dst"
    static let columns = "i int, t text, ts timestamptz, a int[]"
    /// No autovacuum on the benchmark's tables: a worker waking up on them mid-run (after the
    /// previous run's million inserts) would steal CPU from one method and not the other.
    static let noAutovacuum = "WITH (autovacuum_enabled = off)"
    static let copyOut = "COPY \(sourceTable) TO STDOUT"
    static let copyIn = "COPY \(destinationTable) FROM STDIN"

    func validate() throws {
        guard rows >= 1 else { throw ValidationError("--rows must be at least 1") }
        guard runs >= 1 else { throw ValidationError("--runs must be at least 1") }
        guard warmup >= 0 else { throw ValidationError("--warmup must not be negative") }
        guard batchKiB >= 1 else { throw ValidationError("--batch-kib must be at least 1") }
    }

    mutating func run() async throws {
        let command = self
        try await BenchBed.with(bedOptions) { bed in try await command.benchmark(on: bed) }
    }

    private func benchmark(on bed: TestBed) async throws {
        let sourcePort = bed.remotePorts[0]
        let sourceString = bed.connectionString(port: sourcePort)
        let destinationString = bed.connectionString(port: bed.repositoryPort)
        let batchSize = batchKiB * 1024

        let sourceAdmin = try await BenchBed.connect(sourceString)
        let destinationAdmin = try await BenchBed.connect(destinationString)
        defer {
            sourceAdmin.close()
            destinationAdmin.close()
        }
        try await prepareSource(sourceAdmin)
        try await destinationAdmin.execute(
            """
            SET client_min_messages = warning;
            DROP TABLE IF EXISTS \(Self.destinationTable);
            CREATE TABLE \(Self.destinationTable) (\(Self.columns)) \(Self.noAutovacuum);
            """)

        func resetDestination() async throws {
            try await destinationAdmin.execute("TRUNCATE \(Self.destinationTable); CHECKPOINT")
        }
        func checkDestination(_ method: String) async throws {
            let count = try await destinationAdmin.query("SELECT count(*) FROM \(Self.destinationTable)").rows[0][0]
            guard count == String(rows) else {
                throw BenchError("\(method): the destination holds \(count ?? "NULL") rows, not \(rows)")
            }
        }

        // (a) The Swift pipe, in this process.
        func swiftPipe() async throws -> Double {
            try await resetDestination()
            let clock = ContinuousClock()
            let start = clock.now
            let source = try await BenchBed.connect(sourceString)
            let destination = try await BenchBed.connect(destinationString)
            let stored = try await PostgresConnection.pipeCopy(
                from: source, Self.copyOut, to: destination, Self.copyIn, batchSize: batchSize)
            source.close()
            destination.close()
            let seconds = start.duration(to: clock.now).seconds
            guard stored == rows else { throw BenchError("swift pipe: pipeCopy stored \(stored) rows, not \(rows)") }
            try await checkDestination("swift pipe")
            return seconds
        }

        // (b) The psql pipe.
        let psql = "'\(bed.binDirectory)/psql' -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d powa"
        let shellPipe =
            "\(psql) -p \(sourcePort) -c '\(Self.copyOut)' | \(psql) -p \(bed.repositoryPort) -c '\(Self.copyIn)'"
        func psqlPipe() async throws -> Double {
            try await resetDestination()
            let outcome = try await ChildProcess.shell(shellPipe)
            guard outcome.succeeded else {
                throw BenchError("psql pipe failed (status \(outcome.status)): \(outcome.standardError)")
            }
            try await checkDestination("psql pipe")
            return outcome.elapsed.seconds
        }

        note("psql pipe: \(shellPipe)")
        var swiftSeconds: [Double] = []
        var psqlSeconds: [Double] = []
        for index in 0..<(warmup + runs) {
            let timed = index >= warmup
            let label = timed ? "run \(index - warmup + 1)/\(runs)" : "warm-up \(index + 1)/\(warmup)"
            // Alternate which method goes first, so neither always follows the other.
            let swift: Double
            let shell: Double
            if index % 2 == 0 {
                swift = try await swiftPipe()
                shell = try await psqlPipe()
            } else {
                shell = try await psqlPipe()
                swift = try await swiftPipe()
            }
            note(
                "\(label): swift \(formatted(swift, decimals: 3)) s (\(formatted(Double(rows) / swift)) rows/s), "
                    + "psql \(formatted(shell, decimals: 3)) s (\(formatted(Double(rows) / shell)) rows/s)")
            if timed {
                swiftSeconds.append(swift)
                psqlSeconds.append(shell)
            }
        }

        // The peak RSS of the Swift pipe alone, in a child process.
        try await resetDestination()
        let child = try await ChildProcess.run(
            try ChildProcess.currentExecutable(),
            [
                "copy-pipe-once", "--source", sourceString, "--destination", destinationString,
                "--copy-out", Self.copyOut, "--copy-in", Self.copyIn, "--batch-size", String(batchSize),
            ])
        guard child.succeeded else {
            throw BenchError("copy-pipe-once failed (status \(child.status)): \(child.standardError)")
        }
        let report = try CopyPipeOnce.Report(parsing: child.standardOutput)
        guard report.rows == rows else { throw BenchError("copy-pipe-once stored \(report.rows) rows, not \(rows)") }
        try await checkDestination("copy-pipe-once")
        note("copy-pipe-once: \(formatted(report.seconds, decimals: 3)) s; \(child.standardError)")

        printResults(
            swift: RunStatistics(values: swiftSeconds.map { Double(rows) / $0 }), swiftSeconds: swiftSeconds,
            psql: RunStatistics(values: psqlSeconds.map { Double(rows) / $0 }), psqlSeconds: psqlSeconds,
            child: report, sourcePort: sourcePort, destinationPort: bed.repositoryPort)
    }

    /// Creates the source table with the rows, unless a previous run left it with as many.
    private func prepareSource(_ connection: PostgresConnection) async throws {
        let exists = try await connection.query("SELECT to_regclass($1) IS NOT NULL", [Self.sourceTable]).rows[0][0]
        if exists == "t",
            try await connection.query("SELECT count(*) FROM \(Self.sourceTable)").rows[0][0] == String(rows)
        {
            note("reusing \(Self.sourceTable) (\(formatted(Double(rows))) rows)")
            return
        }
        note("creating \(Self.sourceTable) with \(formatted(Double(rows))) rows")
        try await connection.execute(
            """
            SET client_min_messages = warning;
            DROP TABLE IF EXISTS \(Self.sourceTable);
            CREATE TABLE \(Self.sourceTable) (\(Self.columns)) \(Self.noAutovacuum);
            INSERT INTO \(Self.sourceTable) SELECT i, md5(i::text), now(), ARRAY[i, i + 1] FROM generate_series(1, \(rows)) i;
            """)
        // Frozen, hint bits set: the first COPY TO does not write the table.
        try await connection.execute("VACUUM (FREEZE, ANALYZE) \(Self.sourceTable)")
    }

    private func printResults(
        swift: RunStatistics, swiftSeconds: [Double],
        psql: RunStatistics, psqlSeconds: [Double],
        child: CopyPipeOnce.Report, sourcePort: Int, destinationPort: Int
    ) {
        func secondsList(_ values: [Double]) -> String {
            values.map { formatted($0, decimals: 3) }.joined(separator: " ")
        }
        let medianRatio = swift.median / psql.median
        let bestRatio = swift.best / psql.best
        let peakMB = megabytes(child.peakKB)
        let throughputMet = swift.median >= psql.median / Self.maximumSlowdown
        let memoryMet = peakMB < Self.maximumPeakMB
        print(
            """
            powa-bench copy-pipe: \(formatted(Double(rows))) rows, \(Self.copyOut) on remote1 (port \(sourcePort)) \
            -> \(Self.copyIn) on the repository (port \(destinationPort))
            \(runs) timed run(s) of each method after \(warmup) warm-up(s), alternating; pipeCopy batch \(batchKiB) KiB

            """)
        print(
            table(
                ["method", "best rows/s", "median rows/s", "run times (s)"],
                [
                    ["swift pipeCopy (in-process)", formatted(swift.best), formatted(swift.median), secondsList(swiftSeconds)],
                    ["psql | psql", formatted(psql.best), formatted(psql.median), secondsList(psqlSeconds)],
                ]))
        print(
            """

            throughput swift/psql: \(formatted(medianRatio, decimals: 3)) (medians), \(formatted(bestRatio, decimals: 3)) (bests)

            swift pipe alone in a child process (copy-pipe-once; 1 MB = 1024 kB):
            """)
        func mb(_ kilobytes: Int) -> String { formatted(megabytes(kilobytes), decimals: 1) }
        print(
            table(
                ["memory of the child", "MB"],
                [
                    ["idle RSS at start (VmRSS)", mb(child.startKB)],
                    ["RSS once connected (VmRSS)", mb(child.connectedKB)],
                    ["peak RSS before the pipe (VmHWM)", mb(child.peakConnectedKB)],
                    ["peak RSS after the pipe (VmHWM)", mb(child.peakKB)],
                    ["  peak over idle", "+" + mb(child.peakKB - child.startKB)],
                    ["RSS at the end (VmRSS)", mb(child.endKB)],
                    [
                        "  anonymous at start / at the end (RssAnon)",
                        mb(child.anonymousStartKB) + " / " + mb(child.anonymousEndKB),
                    ],
                    ["  file-backed at the end (RssFile: libraries)", mb(child.fileEndKB)],
                ]))
        print(
            """
            pipe alone in the child: \(formatted(child.seconds, decimals: 3)) s, \(formatted(Double(child.rows) / child.seconds)) rows/s

            target  throughput within \(Self.maximumSlowdown)x of psql: \(formatted(swift.median)) >= \(formatted(psql.median / Self.maximumSlowdown)) rows/s (medians)   \(verdict(throughputMet))
            target  peak RSS under \(formatted(Self.maximumPeakMB)) MB: \(formatted(peakMB, decimals: 1)) MB (VmHWM of the child)   \(verdict(memoryMet))
            """)
    }
}
