import ArgumentParser
import Foundation
import PostgresClient
import TestBed

/// `powa-bench collector`: this collector against the Python powa-collector 1.3.2 and against a
/// `psql | psql` pipe (the physical floor), one after the other for the same duration and
/// frequency on the same remotes, whose pg_stat_statements is large (4,000 statements, about
/// 42 MB of query text each). Before that, this collector alone on a pg_stat_statements ten
/// times smaller, to show that its memory does not grow with it. `ours-full` is this collector
/// with `skip_known_query_texts` off: every query text at every snapshot, as Python does.
///
/// Beside the collector's own CPU and RSS, what each method cost the repository cluster: the
/// CPU of its postmaster and every backend (`ClusterCPU`) over the run, per snapshot landed,
/// and over the steady state, from the moment every server's first snapshot of the run landed
/// (`SnapshotWatch`: this collector sends every text at a server's first snapshot).
///
/// Each run gets a fresh repository database. Snapshots, cadence and the repository
/// transaction time come from a log the repository keeps (see `RunRepository`); CPU and peak
/// RSS of a collector from /proc just before it is stopped; the wall time of a snapshot from
/// the collector's debug log (ours: `snapshot taken seconds=`; Python: from `Connecting on
/// repository...` to `Committing transaction`); for the floor, the pipeline's own.
///
/// `--major 5` runs the same on a PoWA 5 bed (powa-archivist 5.0.2), where each remote also
/// has a database of `--tables` tables (`CatalogWorkload`), and compares this collector with
/// the Python one only (the psql floor knows nothing of per-database sources). The first
/// snapshot of a server imports the catalogs of all its databases, at most once a year: it is
/// measured apart (`runFirstSnapshots`), and the run of `--duration` that follows on the same
/// repository is the steady state.
struct CollectorBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "collector",
        abstract: "This collector vs the Python powa-collector 1.3.2 vs psql | psql, on a large pg_stat_statements."
    )

    @OptionGroup var bedOptions: BedOptions

    @Option(help: "Seconds between two snapshots of a server (powa_servers.frequency, at least 5).")
    var frequency = 10

    @Option(help: "Seconds each method runs.")
    var duration = 150.0

    @Option(help: "Remote clusters (one server each).")
    var remotes = 2

    @Option(help: "Statements generated in each remote's pg_stat_statements (IN lists of 1..N items).")
    var statements = 4000

    @Option(
        name: .customLong("small-divisor"),
        help: "The first run, of this collector alone, has N / this many statements (every k-th shape); 0 skips it.")
    var smallDivisor = 10

    @Option(
        help: "The methods to run, comma-separated, among ours, ours-full, python, psql (PoWA 5: no psql; default: all).")
    var methods: String?

    @Option(help: "Seconds the repository cluster's CPU is read idle before the runs (its background processes); 0 skips it.")
    var idle = 10.0

    @Option(help: "The PoWA major version of the test bed: 4 (PoWA 4.1.4) or 5 (powa-archivist 5.0.2).")
    var major = 4

    @Option(help: "PoWA 5: tables (each with a primary key) in a database of their own on each remote.")
    var tables = 2000

    @Option(help: "This collector's binary.")
    var collector = CollectorKind.defaultBinary

    @Option(help: "The venv of the Python collector (created with pip when missing).")
    var venv = PythonCollector.defaultVenv

    /// Targets of the issue.
    static let minimumStatements = 4000
    static let minimumQueryBytes = 40 * 1024 * 1024
    static let cpuRatio = 0.1
    /// The repository's CPU per snapshot (steady state) with this collector, against Python's:
    /// powa's own snapshot work is a larger share of it on PoWA 5.
    var repositoryCPURatio: Double { powaMajor == .five ? 0.12 : 0.1 }
    /// The bytes the remotes send per steady snapshot, against Python's.
    static let remoteBytesRatio = 0.1
    /// The remotes' CPU per steady snapshot, against Python's (an aim, reported).
    static let remoteCPURatio = 0.8
    static let rssRatio = 0.1
    static let flatRSSGrowth = 1.1
    static let wallRatio = 1.1
    /// PoWA 5: our snapshots may take as long as Python's, no longer.
    static let pythonWallRatio = 1.0

    /// PoWA 5, the run of the first snapshots: each server's is due this many seconds after the
    /// collector starts (it is idle by then), the next servers' spread over a period as usual;
    /// meanwhile the servers' frequency is this long, so that no second snapshot follows.
    static let firstSnapshotLead = 5.0
    static let firstRunFrequency = 3600

    var powaMajor: PoWAMajor { PoWAMajor(rawValue: major) ?? .four }

    var selectedMethods: [String] {
        let list = methods ?? Self.knownMethods(powaMajor).joined(separator: ",")
        return list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    }

    func validate() throws {
        guard frequency >= 5 else { throw ValidationError("--frequency must be at least 5 (powa's minimum)") }
        guard duration >= Double(2 * frequency) else { throw ValidationError("--duration must cover two periods at least") }
        guard (1...9).contains(remotes) else { throw ValidationError("--remotes must be from 1 to 9") }
        guard statements >= 1 else { throw ValidationError("--statements must be at least 1") }
        guard smallDivisor >= 0 else { throw ValidationError("--small-divisor must not be negative") }
        guard PoWAMajor(rawValue: major) != nil else { throw ValidationError("--major must be 4 or 5") }
        guard tables >= 0 else { throw ValidationError("--tables must not be negative") }
        let known = Self.knownMethods(powaMajor)
        let unknown = selectedMethods.filter { !known.contains($0) }
        guard unknown.isEmpty, !selectedMethods.isEmpty else {
            throw ValidationError(
                "--methods: unknown \(unknown.joined(separator: ", ")) with PoWA \(major); use \(known.joined(separator: ", "))")
        }
    }

    /// `ours-full`: this collector with `skip_known_query_texts` off (the figures before it).
    static func knownMethods(_ major: PoWAMajor) -> [String] {
        major == .five ? ["ours", "ours-full", "python"] : ["ours", "ours-full", "python", "psql"]
    }

    /// The configuration of `ours-full`.
    static let fullTextSettings = ["skip_known_query_texts": "false"]

    var bedSpec: BedSpec {
        BedSpec(
            name: "bench-collector" + powaMajor.suffix, port: 5500 + powaMajor.portOffset, remotes: remotes,
            remoteConfiguration: [
                "pg_stat_statements.max = \(max(10_000, statements + 1000))",
                // The collectors' COPY statements would add an entry per text: keep the set stable.
                "pg_stat_statements.track_utility = off",
            ],
            repositoryConfiguration: ["track_commit_timestamp = on"], major: powaMajor)
    }

    mutating func run() async throws {
        let command = self
        try await BenchBed.with(bedOptions, bedSpec) { bed in try await command.benchmark(on: bed) }
    }

    /// One method's figures.
    struct Result {
        let label: String
        let log: SnapshotLog
        let cpuSeconds: Double
        let peakRSSKB: Int
        let wallTimes: [Double]
        /// What the servers and the machine spent meanwhile.
        let servers: ServerUsage
        /// From the moment every server's first snapshot of the run had landed to the end.
        var steady: Steady?
        /// PoWA 5: the first snapshots, in a run of their own before this one.
        var first: FirstSnapshots?
        var details: [String] = []

        var cpuPerSnapshot: Double? { perSnapshot(cpuSeconds) }
        /// The repository cluster's CPU over the run / snapshots landed.
        var repositoryPerSnapshot: Double? { servers.repository.flatMap(perSnapshot) }
        var steadyRepositoryPerSnapshot: Double? { steady?.repositoryPerSnapshot }
        var meanWall: Double? { mean(wallTimes) }
        var medianWall: Double? { quantile(wallTimes, 0.5) }
        func perSnapshot(_ value: Double) -> Double? { log.count > 0 ? value / Double(log.count) : nil }
        /// The larger peak RSS of this run and of the first snapshots' run.
        var overallPeakRSSKB: Int { max(peakRSSKB, first?.peakRSSKB ?? 0) }
    }

    /// The steady state of a run: what was spent after every server's first snapshot landed,
    /// and the snapshots that committed meanwhile.
    struct Steady {
        let snapshots: Int
        let servers: ServerUsage
        let collectorCPUSeconds: Double

        var repositoryPerSnapshot: Double? {
            snapshots > 0 ? servers.repository.map { $0 / Double(snapshots) } : nil
        }
        var remotesPerSnapshot: Double? { snapshots > 0 ? servers.remotes.map { $0 / Double(snapshots) } : nil }
        var remoteBytesPerSnapshot: Double? {
            snapshots > 0 ? servers.remoteBytes.map { Double($0) / Double(snapshots) } : nil
        }
        var collectorCPUPerSnapshot: Double? { snapshots > 0 ? collectorCPUSeconds / Double(snapshots) : nil }
    }

    /// PoWA 5: the first snapshot of every server, each importing the catalogs of every
    /// database of its remote.
    struct FirstSnapshots {
        /// The collector's CPU from just before the first one was due to just after the last
        /// landed (it is idle in between), and before (start-up: connections, versions).
        let cpuSeconds: Double
        let startupCPUSeconds: Double
        let peakRSSKB: Int
        /// Each server's, from the collector's log.
        let wallTimes: [Double]
        /// As the repository logged them.
        let log: SnapshotLog
        /// Catalog rows in the repository afterwards, over all servers.
        let catalogRows: Int
        /// The repository cluster's CPU over the same span.
        let repositorySeconds: Double?

        var cpuPerSnapshot: Double? { log.count > 0 ? cpuSeconds / Double(log.count) : nil }
        var repositoryPerSnapshot: Double? {
            log.count > 0 ? repositorySeconds.map { $0 / Double(log.count) } : nil
        }
        var meanWall: Double? { mean(wallTimes) }
    }

    private func benchmark(on bed: TestBed) async throws {
        let methods = selectedMethods
        var pythonVersion = ""
        if methods.contains("python") {
            pythonVersion = try await PythonCollector.ensure(venv: venv)
            note("python collector: powa-collector, libpq: \(pythonVersion)")
        }
        if methods.contains(where: { $0.hasPrefix("ours") }) || smallDivisor > 0 {
            try CollectorKind.requireBinary(collector)
        }
        let servers = bed.remotePorts.enumerated().map { index, port in
            RegisteredServer(hostname: "127.0.0.1", port: port, alias: "remote\(index + 1)")
        }
        var results: [Result] = []
        var smallSize: StatementsWorkload.Size?
        var smallResult: Result?
        var catalogSize: CatalogWorkload.Size?
        if powaMajor == .five {
            catalogSize = try await createCatalogDatabases(bed: bed)
        }
        if RemoteTraffic.install(ports: bed.remotePorts) {
            note("counting the bytes the remotes send (iptables chain \(RemoteTraffic.chain))")
        } else {
            note("the bytes the remotes send are not counted: that needs root and \(RemoteTraffic.iptables)")
        }
        defer { RemoteTraffic.remove() }
        var idleUsage: ServerUsage?
        if idle > 0 {
            let start = ServerUsage.sample(bed)
            try await Task.sleep(for: .seconds(idle))
            idleUsage = ServerUsage(from: start, to: ServerUsage.sample(bed))
        }

        if smallDivisor > 0 {
            let count = max(1, statements / smallDivisor)
            smallSize = try await generate(bed: bed, count: count, step: smallDivisor)
            smallResult = try await runCollector(
                .ours(binary: collector), bed: bed, servers: servers, database: "bench_ours_small",
                label: "ours (small pgss)")
        }

        let largeSize = try await generate(bed: bed, count: statements, step: 1)
        if largeSize.statements < Self.minimumStatements || largeSize.queryBytes < Self.minimumQueryBytes {
            note(
                "warning: pg_stat_statements has \(largeSize.statements) statements and \(formatted(Double(largeSize.queryBytes) / 1_048_576, decimals: 1)) MB "
                    + "of query text per remote, under the issue's 4,000 and 40 MB")
        }
        for method in methods {
            switch method {
            case "ours":
                results.append(
                    try await runCollector(
                        .ours(binary: collector), bed: bed, servers: servers, database: "bench_ours", label: "ours"))
            case "ours-full":
                results.append(
                    try await runCollector(
                        .ours(binary: collector), bed: bed, servers: servers, database: "bench_ours_full",
                        label: "ours-full", settings: Self.fullTextSettings))
            case "python":
                results.append(
                    try await runCollector(
                        .python(venv: venv), bed: bed, servers: servers, database: "bench_python", label: "python 1.3.2"))
            default:
                results.append(try await runFloor(bed: bed, servers: servers))
            }
        }
        printReport(
            results: results, small: smallResult, smallSize: smallSize, largeSize: largeSize, catalogSize: catalogSize,
            servers: servers.count, pythonVersion: pythonVersion, idle: idleUsage)
    }

    /// PoWA 5: the database of `--tables` tables on every remote at once; returns the smallest.
    private func createCatalogDatabases(bed: TestBed) async throws -> CatalogWorkload.Size {
        note("creating \(CatalogWorkload.database) with \(tables) tables on \(bed.remotePorts.count) remote(s)")
        let clock = ContinuousClock()
        let start = clock.now
        let tables = self.tables
        let sizes = try await onEveryRemote(of: bed) { port in
            try await CatalogWorkload.create(bed: bed, port: port, tables: tables)
        }
        let smallest = sizes.min { $0.attributes < $1.attributes } ?? CatalogWorkload.Size(classes: 0, attributes: 0)
        note(
            "\(CatalogWorkload.database): \(formatted(Double(smallest.classes))) pg_class and "
                + "\(formatted(Double(smallest.attributes))) pg_attribute rows per remote "
                + "(\(formatted(start.duration(to: clock.now).seconds, decimals: 1)) s)")
        return smallest
    }

    /// Runs `body` for every remote of the bed at once (by port); returns what each gave.
    private func onEveryRemote<T: Sendable>(
        of bed: TestBed, _ body: @escaping @Sendable (Int) async throws -> T
    ) async throws -> [T] {
        try await withThrowingTaskGroup(of: T.self) { group in
            for port in bed.remotePorts { group.addTask { try await body(port) } }
            var results: [T] = []
            for try await result in group { results.append(result) }
            return results
        }
    }

    /// Generates the statements on every remote at once; returns the smallest remote's size.
    private func generate(bed: TestBed, count: Int, step: Int) async throws -> StatementsWorkload.Size {
        note(
            "generating \(count) statements (IN lists of \(step) to \(count * step) items) on \(bed.remotePorts.count) remote(s)")
        let clock = ContinuousClock()
        let start = clock.now
        let sizes = try await onEveryRemote(of: bed) { port in
            let connection = try await BenchBed.connect(bed.connectionString(port: port))
            defer { connection.close() }
            return try await StatementsWorkload.generate(on: connection, count: count, step: step)
        }
        let smallest = sizes.min { $0.queryBytes < $1.queryBytes } ?? StatementsWorkload.Size(statements: 0, queryBytes: 0)
        note(
            "pg_stat_statements: \(formatted(Double(smallest.statements))) statements, "
                + "\(formatted(Double(smallest.queryBytes) / 1_048_576, decimals: 1)) MB of query text per remote "
                + "(\(formatted(start.duration(to: clock.now).seconds, decimals: 1)) s)")
        return smallest
    }

    private func runCollector(
        _ kind: CollectorKind, bed: TestBed, servers: [RegisteredServer], database: String, label: String,
        settings: [String: String] = [:]
    ) async throws -> Result {
        let repository = try await RunRepository.create(
            bed: bed, database: database, servers: servers, frequency: frequency)
        let first =
            powaMajor == .five
            ? try await runFirstSnapshots(
                kind, repository: repository, label: label, database: database, settings: settings) : nil
        try await repository.seedPhases(offsets: RunRepository.evenOffsets(count: servers.count, frequency: frequency))
        try await repository.resetStatementStatistics()
        let watch = try await SnapshotWatch(repository)
        let before = ServerUsage.sample(bed)
        let measurement: DaemonMeasurement
        do {
            measurement = try await CollectorDaemon.run(
                kind, repository: repository, seconds: duration, label: database, extraSettings: settings,
                sampleWhen: { try await watch.everyServerSnapshotted() })
        } catch {
            watch.close()
            throw error
        }
        watch.close()
        let end = await ServerUsage.settledSample(bed)
        let usage = ServerUsage(from: before, to: end)
        // Only what landed while the collector ran (its CPU was read when it was stopped).
        let log = try await repository.snapshotLog().committed(from: measurement.startClock, to: measurement.endClock)
        let steady = measurement.sample.map { sample in
            Steady(
                snapshots: log.committed(from: sample.clock).count, servers: ServerUsage(from: sample.servers, to: end),
                collectorCPUSeconds: measurement.atEnd.totalCPUSeconds - sample.stats.totalCPUSeconds)
        }
        let statements = try await repository.topStatements(limit: 5)
        if !bedOptions.keep { try await repository.drop() }
        let stats = measurement.atEnd
        var details = [
            "\(label): \(stats.threads) threads, \(stats.openDescriptors) descriptors; CPU user \(formatted(stats.cpu.user, decimals: 2)) s, "
                + "system \(formatted(stats.cpu.system, decimals: 2)) s; RSS at the end \(mb(stats.memory.residentKB)) MB "
                + "(anonymous \(mb(stats.memory.anonymousKB)), files \(mb(stats.memory.fileKB))); smaps_rollup: "
                + ["Rss", "Pss", "Anonymous", "Private_Dirty", "Shared_Clean"].map { "\($0) \(mb(measurement.smaps[$0] ?? 0))" }
                .joined(separator: ", ") + " MB; stopped: \(measurement.exit)"
        ]
        if !measurement.problems.isEmpty {
            details.append(
                "\(label): \(measurement.problems.count) warning/error line(s) in \(measurement.logPath), first: "
                    + measurement.problems.prefix(3).joined(separator: " // "))
        }
        if !log.errors.isEmpty {
            details.append("\(label): powa_snapshot_metas.errors: " + log.errors.prefix(3).joined(separator: " // "))
        }
        if let steady {
            details.append(
                "\(label): steady state: \(steady.snapshots) snapshots over \(formatted(steady.servers.seconds, decimals: 1)) s; "
                    + "collector CPU \(optional(steady.collectorCPUPerSnapshot, decimals: 4)) s/snapshot, repository "
                    + "\(optional(steady.repositoryPerSnapshot, decimals: 4)) s/snapshot")
        }
        if !statements.isEmpty {
            details.append(
                "\(label): repository's top statements by time (pg_stat_statements, top level): "
                    + statements.map {
                        "\($0.query) (\($0.calls) calls, \(formatted($0.totalSeconds, decimals: 2)) s, max \(formatted($0.maxSeconds * 1000, decimals: 1)) ms)"
                    }
                    .joined(separator: "; "))
        }
        if let first {
            details.append(
                "\(label): first snapshots: start-up CPU \(formatted(first.startupCPUSeconds, decimals: 3)) s before the first was due; "
                    + "\(formatted(Double(first.catalogRows))) catalog rows imported in all"
                    + (first.log.errors.isEmpty ? "" : "; errors: " + first.log.errors.prefix(3).joined(separator: " // ")))
        }
        return Result(
            label: label, log: log, cpuSeconds: stats.totalCPUSeconds, peakRSSKB: stats.memory.peakResidentKB,
            wallTimes: measurement.wallTimes, servers: usage, steady: steady, first: first, details: details)
    }

    /// PoWA 5: the first snapshot of every server, alone. The collector starts with the
    /// servers' frequency an hour, their first snapshots due `firstSnapshotLead` seconds later
    /// and spread over a period of `--frequency` as in the run that follows; it is stopped as
    /// soon as the repository logged every server's. CPU: /proc read a second before the first
    /// one was due and just after the last landed (all it did in between is those snapshots);
    /// wall times from the collector's log (`LogParsing.firstSnapshotSeconds`). The frequency is
    /// then set back, and the repository, whose catalogs are now imported, serves the steady run.
    private func runFirstSnapshots(
        _ kind: CollectorKind, repository: RunRepository, label: String, database: String,
        settings: [String: String]
    ) async throws -> FirstSnapshots {
        let first = try await repository.setFrequency(Self.firstRunFrequency)
        let count = first.servers.count
        let lead = Self.firstSnapshotLead
        try await first.seedPhases(
            offsets: (0..<count).map { lead + Double(frequency) * Double($0) / Double(count) })
        // Every server's first snapshot is due within a period; the last may take the snapshot
        // timeout (60 s by default), and a margin.
        let limit = lead + Double(frequency) + 90
        let measurement = try await CollectorDaemon.run(
            kind, repository: first, seconds: limit, label: database + "_first", extraSettings: settings,
            sampleAfter: lead - 1,
            stopWhen: { try await first.snapshotLog().count >= count })
        if !measurement.problems.isEmpty {
            note(
                "\(label): first snapshots: \(measurement.problems.count) warning/error line(s) in \(measurement.logPath), first: "
                    + measurement.problems.prefix(3).joined(separator: " // "))
        }
        let end = await ServerUsage.settledSample(repository.bed)
        let log = try await first.snapshotLog().committed(to: measurement.endClock)
        if log.count < count {
            note("\(label): only \(log.count) of \(count) first snapshots landed within \(Int(limit)) s")
        }
        _ = try await first.setFrequency(frequency)
        let logText = (try? String(contentsOfFile: measurement.logPath, encoding: .utf8)) ?? ""
        let startup = measurement.sample?.stats.totalCPUSeconds ?? 0
        return FirstSnapshots(
            cpuSeconds: measurement.atEnd.totalCPUSeconds - startup, startupCPUSeconds: startup,
            peakRSSKB: measurement.atEnd.memory.peakResidentKB,
            wallTimes: LogParsing.firstSnapshotSeconds(logText, kind: kind), log: log,
            catalogRows: try await first.catalogRows(),
            repositorySeconds: measurement.sample.flatMap { ServerUsage(from: $0.servers, to: end).repository })
    }

    private func runFloor(bed: TestBed, servers: [RegisteredServer]) async throws -> Result {
        let repository = try await RunRepository.create(
            bed: bed, database: "bench_psql", servers: servers, frequency: frequency)
        let floor = PsqlFloor(repository: repository, psql: bed.binDirectory + "/psql", seconds: duration)
        let before = ServerUsage.sample(bed)
        let measurement = try await floor.run(label: "bench_psql")
        let usage = await ServerUsage.since(before, bed)
        let log = try await repository.snapshotLog()
        if !bedOptions.keep { try await repository.drop() }
        var details = [
            "psql | psql: CPU user \(formatted(measurement.cpu.user, decimals: 2)) s, system \(formatted(measurement.cpu.system, decimals: 2)) s "
                + "over \(measurement.wallTimes.count + measurement.failures.count) pipeline(s) of 2 psql each (wait4)"
        ]
        if !measurement.failures.isEmpty {
            details.append(
                "psql | psql: \(measurement.failures.count) failed pipeline(s), first: "
                    + measurement.failures.prefix(2).joined(separator: " // "))
        }
        return Result(
            label: "psql | psql (floor)", log: log, cpuSeconds: measurement.cpu.total, peakRSSKB: measurement.peakRSSKB,
            wallTimes: measurement.wallTimes, servers: usage, details: details)
    }

    private func mb(_ kilobytes: Int) -> String { formatted(megabytes(kilobytes), decimals: 1) }
    private func optional(_ value: Double?, decimals: Int) -> String {
        value.map { formatted($0, decimals: decimals) } ?? "-"
    }

    private func printReport(
        results: [Result], small: Result?, smallSize: StatementsWorkload.Size?, largeSize: StatementsWorkload.Size,
        catalogSize: CatalogWorkload.Size?, servers: Int, pythonVersion: String, idle: ServerUsage?
    ) {
        func megabytesText(_ bytes: Int) -> String { formatted(Double(bytes) / 1_048_576, decimals: 1) }
        var header =
            "powa-bench collector: \(servers) remote(s), frequency \(frequency) s, \(formatted(duration)) s per method\n"
            + "pg_stat_statements per remote: \(formatted(Double(largeSize.statements))) statements, "
            + "\(megabytesText(largeSize.queryBytes)) MB of query text"
        if let smallSize {
            header +=
                " (first run: \(formatted(Double(smallSize.statements))) statements, \(megabytesText(smallSize.queryBytes)) MB)"
        }
        if let catalogSize {
            header =
                "PoWA 5 (powa-archivist 5.0.2): " + header + "\nper remote also a database \(CatalogWorkload.database) of "
                + "\(formatted(Double(tables))) tables: \(formatted(Double(catalogSize.classes))) pg_class, "
                + "\(formatted(Double(catalogSize.attributes))) pg_attribute rows"
        }
        if !pythonVersion.isEmpty { header += "\nPython collector: powa-collector \(pythonVersion) (version, libpq)" }
        if let idle, let repository = idle.repository {
            header +=
                "\nrepository cluster idle (no collector): \(formatted(repository / max(idle.seconds, 1) * 1000, decimals: 1)) ms "
                + "of CPU per second over \(formatted(idle.seconds, decimals: 0)) s"
        }
        print(header + "\n")

        let rows = ([small].compactMap { $0 } + results).map { result -> [String] in
            let log = result.log
            return [
                result.label, formatted(Double(log.count)), optional(result.cpuPerSnapshot, decimals: 4),
                formatted(megabytes(result.peakRSSKB), decimals: 1), optional(result.repositoryPerSnapshot, decimals: 3),
                optional(result.steadyRepositoryPerSnapshot, decimals: 3), optional(result.meanWall, decimals: 3),
                optional(result.medianWall, decimals: 3), optional(log.meanTransactionSeconds, decimals: 3),
                optional(log.meanGap, decimals: 3),
                optional(log.meanGapError.map { $0 * 100 }, decimals: 3), optional(log.maxGap, decimals: 3),
            ]
        }
        print(
            table(
                [
                    "method", "snapshots", "CPU s/snapshot", "peak RSS MB", "repo CPU s/snapshot", "steady repo CPU",
                    "mean wall s", "median wall s", "repo xact s", "mean gap s", "gap error %", "max gap s",
                ], rows))
        print(
            """

            CPU: user+sys of the process and all its threads (/proc/<pid>/stat; psql: both processes, wait4) / snapshots.
            peak RSS: VmHWM just before stopping (psql: the larger ru_maxrss). repo CPU: the repository cluster's
            (postmaster, backends alive or reaped: /proc) over the run / snapshots; steady: from the moment every server's
            first snapshot of the run landed (ours sends every text then) / snapshots since. wall: a whole snapshot as the collector
            logs it (psql: the pipeline, process starts included). repo xact: snapts to commit on the repository.
            gaps: snapts to snapts of each server. Servers spread evenly over the period, the same for every method.

            """)
        let serverRows = ([small].compactMap { $0 } + results).map { result -> [String] in
            let usage = result.servers
            let own = result.cpuSeconds + (usage.repository ?? 0) + (usage.remotes ?? 0)
            return [
                result.label, optional(usage.repository, decimals: 1),
                optional(usage.remotes.flatMap(result.perSnapshot), decimals: 3),
                optional(result.steady?.remotesPerSnapshot, decimals: 3),
                optional(result.steady?.remoteBytesPerSnapshot.map { $0 / 1_048_576 }, decimals: 3),
                formatted(
                    usage.machine / max(usage.seconds, 1) / Double(ProcessInfo.processInfo.activeProcessorCount) * 100,
                    decimals: 1),
                formatted(max(0, usage.machine - own), decimals: 1),
            ]
        }
        print(
            table(
                [
                    "method", "repository CPU s", "remotes CPU s/snapshot", "steady remotes CPU", "steady remote MB/snapshot",
                    "machine busy %", "others' CPU s",
                ],
                serverRows))
        print(
            """

            Servers: CPU of every process of the clusters (postmaster, backends reaped or alive) over the run, and in
            the steady state per snapshot. remote MB: what the remotes sent, IP packets from their ports (iptables).
            others: the machine's busy CPU seconds minus the method's and the clusters' (whatever else ran meanwhile).

            """)
        let firsts = ([small].compactMap { $0 } + results).compactMap { result in result.first.map { (result.label, $0) } }
        if !firsts.isEmpty {
            print(
                table(
                    [
                        "first snapshot", "snapshots", "CPU s/snapshot", "peak RSS MB", "repo CPU s/snapshot",
                        "mean wall s", "max wall s", "repo xact s", "catalog rows/server",
                    ],
                    firsts.map { label, first in
                        [
                            label, "\(first.log.count)/\(servers)", optional(first.cpuPerSnapshot, decimals: 4),
                            formatted(megabytes(first.peakRSSKB), decimals: 1),
                            optional(first.repositoryPerSnapshot, decimals: 3), optional(first.meanWall, decimals: 3),
                            optional(first.wallTimes.max(), decimals: 3), optional(first.log.meanTransactionSeconds, decimals: 3),
                            formatted(Double(first.catalogRows) / Double(max(servers, 1))),
                        ]
                    }))
            print(
                """

                first snapshot: each server's first, which imports the catalogs of every database of its remote, in a run
                of its own before the one above (same repository, catalogs then imported). CPU: /proc a second before the
                first was due to just after the last landed / snapshots. peak RSS: VmHWM of that run. wall: from the log
                (Python: from its first source). repo xact: snapts to commit on the repository.

                """)
        }

        let ours = results.first { $0.label == "ours" }
        let python = results.first { $0.label.hasPrefix("python") }
        let floor = results.first { $0.label.hasPrefix("psql") }
        func ratio(_ a: Double?, _ b: Double?) -> Double? {
            guard let a, let b, b > 0 else { return nil }
            return a / b
        }
        let oursFull = results.first { $0.label == "ours-full" }
        func ratioRow(_ label: String, _ a: Result, _ b: Result) -> [String] {
            [
                label, optional(ratio(a.cpuPerSnapshot, b.cpuPerSnapshot), decimals: 3),
                optional(ratio(Double(a.peakRSSKB), Double(b.peakRSSKB)), decimals: 3),
                optional(ratio(a.repositoryPerSnapshot, b.repositoryPerSnapshot), decimals: 3),
                optional(ratio(a.steadyRepositoryPerSnapshot, b.steadyRepositoryPerSnapshot), decimals: 3),
                optional(ratio(a.meanWall, b.meanWall), decimals: 3),
                optional(ratio(a.log.meanTransactionSeconds, b.log.meanTransactionSeconds), decimals: 3),
            ]
        }
        var ratioRows: [[String]] = []
        for (a, b) in [(ours, python), (oursFull, python), (ours, oursFull), (ours, floor)] {
            guard let a, let b else { continue }
            ratioRows.append(ratioRow("\(a.label) / \(b.label)", a, b))
            if let aFirst = a.first, let bFirst = b.first {
                ratioRows.append([
                    "\(a.label) / \(b.label), first snapshot",
                    optional(ratio(aFirst.cpuPerSnapshot, bFirst.cpuPerSnapshot), decimals: 3),
                    optional(ratio(Double(aFirst.peakRSSKB), Double(bFirst.peakRSSKB)), decimals: 3),
                    optional(ratio(aFirst.repositoryPerSnapshot, bFirst.repositoryPerSnapshot), decimals: 3), "-",
                    optional(ratio(aFirst.meanWall, bFirst.meanWall), decimals: 3),
                    optional(ratio(aFirst.log.meanTransactionSeconds, bFirst.log.meanTransactionSeconds), decimals: 3),
                ])
            }
        }
        if !ratioRows.isEmpty {
            print(
                table(
                    ["ratio", "CPU/snapshot", "peak RSS", "repo CPU/snapshot", "steady repo CPU", "mean wall", "repo xact"],
                    ratioRows))
            print("")
        }

        if let ours {
            /// One of the issue's steady-state ratios to Python, with its verdict.
            func steadyRatio(
                _ kind: String, _ what: String, _ value: (Result) -> Double?, at most: Double, unit: String,
                scale: Double = 1
            ) {
                guard let python, let mine = value(ours), let theirs = value(python), theirs > 0 else { return }
                print(
                    "\(kind)\(what)/snapshot (steady) <= \(formatted(most, decimals: 2))x Python's: "
                        + "\(formatted(mine / scale, decimals: 4)) <= \(formatted(theirs * most / scale, decimals: 4)) \(unit) "
                        + "(\(formatted(mine / theirs, decimals: 3))x)   " + verdict(mine <= theirs * most))
            }
            steadyRatio("target  ", "collector CPU", { $0.steady?.collectorCPUPerSnapshot }, at: Self.cpuRatio, unit: "s")
            steadyRatio(
                "target  ", "bytes the remotes send", { $0.steady?.remoteBytesPerSnapshot }, at: Self.remoteBytesRatio,
                unit: "MB", scale: 1_048_576)
            steadyRatio("aim     ", "remotes' CPU", { $0.steady?.remotesPerSnapshot }, at: Self.remoteCPURatio, unit: "s")
            steadyRatio("target  ", "repository CPU", { $0.steadyRepositoryPerSnapshot }, at: repositoryCPURatio, unit: "s")
            if let oursRun = ours.repositoryPerSnapshot, let pythonRun = python?.repositoryPerSnapshot {
                print(
                    "        over the whole run (first snapshots included): \(formatted(oursRun, decimals: 4)) <= "
                        + "\(formatted(pythonRun * repositoryCPURatio, decimals: 4)) s   "
                        + verdict(oursRun <= pythonRun * repositoryCPURatio))
            }
            if let oursFull {
                let comparisons: [(String, Double?, Double?, Int)] = [
                    ("mean snapshot wall time", ours.meanWall, oursFull.meanWall, 3),
                    ("collector CPU/snapshot", ours.cpuPerSnapshot, oursFull.cpuPerSnapshot, 4),
                    ("peak RSS MB", megabytes(ours.overallPeakRSSKB), megabytes(oursFull.overallPeakRSSKB), 1),
                ]
                for (what, value, before, decimals) in comparisons {
                    guard let value, let before else { continue }
                    print(
                        "target  \(what) no worse than ours-full (every text): \(formatted(value, decimals: decimals)) <= "
                            + "\(formatted(before, decimals: decimals))   " + verdict(value <= before))
                }
            }
            // PoWA 5: the peak of the two runs, the first snapshots' and the steady one.
            let both = ours.first == nil ? "" : " (both runs)"
            if let python {
                let limit = Double(python.overallPeakRSSKB) * Self.rssRatio
                print(
                    "target  peak RSS\(both) <= 1/10 of Python's: \(mb(ours.overallPeakRSSKB)) <= \(formatted(megabytes(Int(limit)), decimals: 1)) MB   "
                        + verdict(Double(ours.overallPeakRSSKB) <= limit))
            }
            if let small {
                let limit = Double(small.overallPeakRSSKB) * Self.flatRSSGrowth
                print(
                    "target  peak RSS\(both) flat when pg_stat_statements grows tenfold: \(mb(small.overallPeakRSSKB)) -> \(mb(ours.overallPeakRSSKB)) MB "
                        + "(limit +10 %: \(formatted(megabytes(Int(limit)), decimals: 1)))   "
                        + verdict(Double(ours.overallPeakRSSKB) <= limit))
            }
            if let floor, let oursWall = ours.meanWall, let floorWall = floor.meanWall {
                print(
                    "target  mean snapshot wall time <= 1.1x psql | psql + powa_take_snapshot: \(formatted(oursWall, decimals: 3)) <= "
                        + "\(formatted(floorWall * Self.wallRatio, decimals: 3)) s   "
                        + verdict(oursWall <= floorWall * Self.wallRatio))
            }
            if powaMajor == .five, let python, let oursWall = ours.meanWall, let pythonWall = python.meanWall {
                print(
                    "target  mean snapshot wall time <= Python's: \(formatted(oursWall, decimals: 3)) <= "
                        + "\(formatted(pythonWall * Self.pythonWallRatio, decimals: 3)) s   "
                        + verdict(oursWall <= pythonWall * Self.pythonWallRatio))
            }
            if let oursFirst = ours.first, let pythonFirst = python?.first {
                if let oursCPU = oursFirst.cpuPerSnapshot, let pythonCPU = pythonFirst.cpuPerSnapshot {
                    print(
                        "target  first snapshot CPU <= 1/10 of Python's: \(formatted(oursCPU, decimals: 4)) <= "
                            + "\(formatted(pythonCPU * Self.cpuRatio, decimals: 4)) s   "
                            + verdict(oursCPU <= pythonCPU * Self.cpuRatio))
                }
                if let oursWall = oursFirst.meanWall, let pythonWall = pythonFirst.meanWall {
                    print(
                        "target  first snapshot wall time <= Python's: \(formatted(oursWall, decimals: 3)) <= "
                            + "\(formatted(pythonWall * Self.pythonWallRatio, decimals: 3)) s   "
                            + verdict(oursWall <= pythonWall * Self.pythonWallRatio))
                }
            }
            let log = ours.log
            print(
                "target  cadence: mean gap within 0.5 % of \(frequency) s, no gap above \(frequency + 1) s: mean "
                    + "\(optional(log.meanGap, decimals: 3)) s (\(optional(log.meanGapError.map { $0 * 100 }, decimals: 3)) %), "
                    + "max \(optional(log.maxGap, decimals: 3)) s, \(log.gapsOverLimit) gap(s) over   " + verdict(log.cadenceHeld)
            )
        }

        let details = ([small].compactMap { $0 } + results).flatMap(\.details)
        if !details.isEmpty {
            print("\ndetails:")
            for line in details { print("  " + line) }
        }
    }
}
