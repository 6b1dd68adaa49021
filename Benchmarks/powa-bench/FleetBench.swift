import ArgumentParser
import Foundation
import Glibc
import TestBed

/// `powa-bench fleet`: several collectors on one repository (a fleet) on the scale bed
/// (`ScaleBed`), against one, in one invocation, each run on a fresh repository of S servers:
///
/// 1. one instance of a baseline binary (`--baseline-collector`: a build from before the fleet),
///    then one of this build: the cost of the fleet logic to a collector alone (CPU per
///    snapshot, peak RSS, the repository's CPU per snapshot, cadence);
/// 2. two instances of this build started together: each one's CPU and RSS against the one
///    instance's, the cadence of the whole (every server once per period, none twice), and how
///    `pg_locks` shows the servers split;
/// 3. then the leader of the two is SIGKILLed: the time until the survivor holds every server
///    lock (and the leader lock), and until each of the dead one's servers has a new snapshot,
///    with the gap across the kill of each.
///
/// `--runs` orders them, and repeats them: this machine is shared, and alternating runs of the
/// baseline and of this build (`baseline,one,one,baseline`) tells a cost from noise.
struct FleetBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet",
        abstract: "Two collectors on one repository against one (and a baseline binary): CPU, RSS, cadence, takeover."
    )

    @OptionGroup var bedOptions: BedOptions

    @Option(help: "Servers to register.")
    var servers = 1000

    @Option(help: "Seconds between two snapshots of a server.")
    var frequency = 60

    @Option(help: "Seconds each run lasts (the takeover comes after the two instances' run).")
    var duration = 180.0

    @Option(help: "Remote clusters the servers are spread over.")
    var clusters = 4

    @Option(help: "This collector's binary.")
    var collector = CollectorKind.defaultBinary

    @Option(
        name: .customLong("baseline-collector"),
        help: "A collector binary to measure alone first (e.g. a build from before the fleet); none: no baseline run.")
    var baselineCollector: String?

    @Option(
        name: .customLong("max-concurrent-snapshots"),
        help: "The collectors' max_concurrent_snapshots (default: the collector's own).")
    var maxConcurrentSnapshots: Int?

    @Option(
        help: """
            The runs in order, comma-separated, any of them more than once: baseline (one instance of \
            --baseline-collector), one (one instance of this build), two (two of this build, then the takeover). \
            Default: baseline,one,two (one,two without --baseline-collector).
            """)
    var runs: String?

    @OptionGroup var collectorEnvironmentOptions: CollectorEnvironment

    /// Targets of the issue: the same cost alone (within this ratio, the machine's noise),
    /// about half of it each with two (at most this ratio), servers taken over within a
    /// frequency + this many seconds of a SIGKILL.
    static let sameCostRatio = 1.1
    static let halfRatio = 0.6
    static let takeoverMargin = 10.0

    func validate() throws {
        guard frequency >= 5 else { throw ValidationError("--frequency must be at least 5 (powa's minimum)") }
        guard duration >= Double(2 * frequency) else { throw ValidationError("--duration must cover two periods at least") }
        try ScaleBed.validate(servers: [servers], clusters: clusters)
        guard servers >= 2 else { throw ValidationError("--servers: at least 2, to split") }
        let unknown = selectedRuns.filter { !["baseline", "one", "two"].contains($0) }
        guard unknown.isEmpty, !selectedRuns.isEmpty else {
            throw ValidationError("--runs: unknown \(unknown.joined(separator: ", ")); use baseline, one, two")
        }
        guard baselineCollector != nil || !selectedRuns.contains("baseline") else {
            throw ValidationError("--runs: a baseline run needs --baseline-collector")
        }
    }

    var selectedRuns: [String] {
        (runs ?? (baselineCollector == nil ? "one,two" : "baseline,one,two")).split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }
    }

    /// One run of the invocation: its kind (baseline, one, two), its name, what it measured.
    struct FleetRun {
        let kind: String
        /// ` #2` for the second of a kind that runs more than once, else empty.
        let rank: String
        let run: ScaleRun
        /// Two instances: the fleet at the end of the measurement, and the takeover after it.
        var shape: FleetShape?
        var takeover: Takeover?

        var label: String { kind + rank }
    }

    mutating func run() async throws {
        let command = self
        try await BenchBed.with(bedOptions, ScaleBed.spec(servers: servers, clusters: clusters)) { bed in
            try await command.benchmark(on: bed)
        }
    }

    private var extraSettings: [String: String] {
        maxConcurrentSnapshots.map { ["max_concurrent_snapshots": String($0)] } ?? [:]
    }

    private func measure(
        _ bed: TestBed, _ name: String, _ collectors: [CollectorKind],
        afterMeasurement: ((RunRepository, [StartedCollector]) async throws -> Void)? = nil
    ) async throws -> ScaleRun {
        try await ScaleRun.measure(
            bed: bed, database: "bench_fleet_\(name)", servers: servers, frequency: frequency, duration: duration,
            collectors: collectors, extraSettings: extraSettings, environment: collectorEnvironmentOptions.variables,
            keep: bedOptions.keep, afterMeasurement: afterMeasurement)
    }

    private func benchmark(on bed: TestBed) async throws {
        for binary in [collector] + (baselineCollector.map { [$0] } ?? []) {
            try CollectorKind.requireBinary(binary)
        }
        ScaleBed.checkDescriptorLimit(servers: servers)
        var results: [FleetRun] = []
        for kind in selectedRuns {
            let rank = results.filter { $0.kind == kind }.count + 1
            let repeated = selectedRuns.filter { $0 == kind }.count > 1
            let name = rank == 1 ? kind : "\(kind)_\(rank)"
            let suffix = repeated ? " #\(rank)" : ""
            switch kind {
            case "baseline", "one":
                let binary = kind == "one" ? collector : baselineCollector ?? collector
                let run = try await measure(bed, name, [.ours(binary: binary)])
                results.append(FleetRun(kind: kind, rank: suffix, run: run))
            default:
                var shape: FleetShape?
                var takeover: Takeover?
                let run = try await measure(bed, name, [.ours(binary: collector), .ours(binary: collector)]) {
                    repository, started in
                    let fleet = try await FleetShape.read(repository, started)
                    shape = fleet
                    takeover = try await Takeover.run(
                        repository: repository, collectors: started, shape: fleet, frequency: frequency,
                        timeout: Double(2 * frequency) + 30)
                }
                guard shape != nil, takeover != nil else { throw BenchError("\(kind)\(suffix): no takeover after the run") }
                results.append(FleetRun(kind: kind, rank: suffix, run: run, shape: shape, takeover: takeover))
            }
        }
        report(results)
    }

    // MARK: The report

    private func optional(_ value: Double?, _ decimals: Int, scale: Double = 1) -> String {
        value.map { formatted($0 * scale, decimals: decimals) } ?? "-"
    }

    private func ratio(_ a: Double?, _ b: Double?) -> Double? {
        guard let a, let b, b > 0 else { return nil }
        return a / b
    }

    private func report(_ results: [FleetRun]) {
        let cpus = ProcessInfo.processInfo.activeProcessorCount
        var settings = "max_concurrent_snapshots \(maxConcurrentSnapshots.map(String.init) ?? "default")"
        if !collectorEnvironmentOptions.items.isEmpty {
            settings += ", environment " + collectorEnvironmentOptions.items.joined(separator: " ")
        }
        print(
            """
            powa-bench fleet: \(servers) servers at frequency \(frequency) s over \(clusters) cluster(s) at 127.0.0.x, \
            \(formatted(duration)) s per run; runs \(selectedRuns.joined(separator: ",")); \(settings); \(cpus) CPU(s)
            collector \(collector)\(baselineCollector.map { "\nbaseline  \($0)" } ?? "")

            """)
        let alone = results.filter { $0.kind == "one" }.map(\.run)
        reportAlone(results)
        for result in results where result.kind == "two" {
            if let shape = result.shape { reportSplit(result.label, two: result.run, fleet: shape, alone: alone) }
            if let takeover = result.takeover { reportTakeover(result.label, takeover) }
        }
        var details: [String] = []
        for result in results {
            let run = result.run
            for (index, measurement) in run.measurements.enumerated() {
                let label = run.measurements.count == 1 ? result.label : "\(result.label) #\(index + 1)"
                details.append("\(label): stopped: \(measurement.exit); log \(measurement.logPath)")
                if !measurement.problems.isEmpty {
                    details.append(
                        "\(label): \(measurement.problems.count) warning/error line(s), first: "
                            + measurement.problems.prefix(3).joined(separator: " // "))
                }
            }
            details.append(
                "\(result.label): machine busy \(formatted(run.machineBusyPercent, decimals: 1)) % of \(cpus) CPUs over "
                    + "\(formatted(run.usage.seconds)) s: collector(s) \(formatted(run.cpuSeconds, decimals: 1)) s, repository "
                    + "\(optional(run.usage.repository, 1)) s, remotes \(optional(run.usage.remotes, 1)) s, others "
                    + "\(formatted(run.othersCPUSeconds, decimals: 1)) s of CPU (others: another benchmark, a build...)")
            if !run.otherBenchmarks.isEmpty {
                details.append(
                    "\(result.label): WARNING: another powa-bench ran at the same time (pid "
                        + run.otherBenchmarks.sorted().map(String.init).joined(separator: ", ") + "): figures distorted")
            }
            if !run.log.errors.isEmpty {
                details.append(
                    "\(result.label): \(run.log.errors.count) server(s) with powa_snapshot_metas.errors, first: "
                        + run.log.errors.prefix(2).joined(separator: " // "))
            }
        }
        print("\ndetails:")
        for line in details { print("  " + line) }
    }

    /// The mean of a figure over runs (nil when a run lacks it, or there is none).
    private func mean(_ runs: [ScaleRun], _ figure: (ScaleRun) -> Double?) -> Double? {
        let values = runs.compactMap(figure)
        return values.count == runs.count ? powa_bench.mean(values) : nil
    }

    private func peakKB(_ run: ScaleRun) -> Double? { Double(run.measurements[0].atEnd.memory.peakResidentKB) }

    /// 1. One instance against the baseline binary (and the two instances' sum, for scale).
    private func reportAlone(_ results: [FleetRun]) {
        let rows = results.map { result in
            let run = result.run
            let name =
                switch result.kind {
                case "baseline": "baseline, 1 instance"
                case "one": "this build, 1 instance"
                default: "this build, 2 instances (sum)"
                }
            return [
                name + result.rank,
                "\(formatted(Double(run.log.count)))/\(formatted(run.expected(duration: duration)))",
                optional(run.log.meanGap, 3), optional(run.log.maxGap, 3), "\(run.log.gapsOverLimit)", "\(run.log.doubled)",
                optional(run.cpuPerSnapshot, 2, scale: 1000), optional(run.steadyCPUPerSnapshot, 2, scale: 1000),
                run.measurements.map { formatted(megabytes($0.atEnd.memory.peakResidentKB), decimals: 1) }
                    .joined(separator: " + "),
                optional(run.repositoryPerSnapshot, 1, scale: 1000), optional(run.steadyRepositoryPerSnapshot, 1, scale: 1000),
                formatted(run.othersCPUSeconds, decimals: 1),
            ]
        }
        print("1. One instance of this build against the baseline binary")
        print(
            table(
                [
                    "run", "snapshots/expected", "mean gap s", "max gap s", "gaps > F+1", "gaps < F/2", "CPU ms/snap",
                    "steady ms/snap", "peak RSS MB", "repo CPU ms/snap", "steady repo ms/snap", "others' CPU s",
                ], rows))
        print(
            """

            CPU: user+sys of the collector(s) per snapshot landed; steady: from one period in. repo CPU: the repository
            cluster's (postmaster, backends alive or reaped: /proc) per snapshot landed. gaps < F/2: a server snapshotted
            twice in one period. others' CPU: the machine's other processes during the run (noise: compare runs with little).
            """)
        let baselines = results.filter { $0.kind == "baseline" }.map(\.run)
        let ones = results.filter { $0.kind == "one" }.map(\.run)
        guard !baselines.isEmpty, !ones.isEmpty else {
            print("(no baseline run, or no run of one instance of this build: nothing to compare)\n")
            return
        }
        let figures: [(String, Double?)] = [
            ("CPU per snapshot", ratio(mean(ones, \.cpuPerSnapshot), mean(baselines, \.cpuPerSnapshot))),
            ("steady", ratio(mean(ones, \.steadyCPUPerSnapshot), mean(baselines, \.steadyCPUPerSnapshot))),
            ("peak RSS", ratio(mean(ones, peakKB), mean(baselines, peakKB))),
            (
                "repository CPU per snapshot",
                ratio(mean(ones, \.repositoryPerSnapshot), mean(baselines, \.repositoryPerSnapshot))
            ),
            ("steady", ratio(mean(ones, \.steadyRepositoryPerSnapshot), mean(baselines, \.steadyRepositoryPerSnapshot))),
        ]
        let over = ones.count == 1 && baselines.count == 1 ? "" : " (means of \(ones.count) and \(baselines.count) runs)"
        print(
            "this build / baseline, 1 instance\(over): "
                + figures.map { "\($0.0) \(optional($0.1, 3))x" }.joined(separator: ", "))
        let same = figures.allSatisfy { ($0.1 ?? .infinity) <= Self.sameCostRatio }
        print(
            "target  1 instance costs what the baseline does (each ratio at most \(formatted(Self.sameCostRatio, decimals: 1))x)   "
                + verdict(same))
        func held(_ run: ScaleRun) -> Bool {
            run.log.cadenceHeld && run.log.doubled == 0 && run.log.serversSnapshotted == servers
        }
        print(
            "target  1 instance, cadence held (mean gap within 0.5 %, no gap above F+1, none under F/2; baseline: "
                + "\(baselines.allSatisfy(held) ? "held" : "not held"))   " + verdict(ones.allSatisfy(held)))
        print("")
    }

    /// 2. Two instances against one (the mean of the runs of one instance).
    private func reportSplit(_ label: String, two: ScaleRun, fleet: FleetShape, alone: [ScaleRun]) {
        let aloneSteady = mean(alone) { $0.steadyCPUSeconds(0) }
        let alonePeak = mean(alone, peakKB)
        func memoryColumns(_ measurement: DaemonMeasurement) -> [String] {
            let memory = measurement.atEnd.memory
            return [
                formatted(megabytes(memory.peakResidentKB), decimals: 1),
                optional(ratio(Double(memory.peakResidentKB), alonePeak), 2),
                formatted(megabytes(memory.residentKB), decimals: 1), formatted(megabytes(memory.anonymousKB), decimals: 1),
                formatted(megabytes(memory.fileKB), decimals: 1),
            ]
        }
        var rows = alone.map { one in
            let measurement = one.measurements[0]
            return [
                "1 instance", "-", "\(servers)", formatted(measurement.atEnd.totalCPUSeconds, decimals: 2),
                formatted(measurement.atEnd.totalCPUSeconds / one.elapsed * 100, decimals: 1),
                optional(one.steadyCPUSeconds(0), 2), optional(ratio(one.steadyCPUSeconds(0), aloneSteady), 2),
                optional(one.steadyCPUPerSnapshot, 2, scale: 1000),
            ] + memoryColumns(measurement) + ["-"]
        }
        let steadyLog = two.steadyLog
        var steadyRatios: [Double?] = []
        var peakRatios: [Double?] = []
        for (index, measurement) in two.measurements.enumerated() {
            let member = fleet.members[index]
            let owned = Set(fleet.owners.compactMap { $0.value == member ? $0.key : nil })
            let steady = two.steadyCPUSeconds(index)
            let landed = steadyLog.map { log in log.entries.filter { owned.contains($0.srvid) }.count }
            steadyRatios.append(ratio(steady, aloneSteady))
            peakRatios.append(ratio(Double(measurement.atEnd.memory.peakResidentKB), alonePeak))
            rows.append(
                [
                    "2 instances, #\(index + 1)\(member == fleet.leader ? " (leader)" : "")", "\(member)", "\(owned.count)",
                    formatted(measurement.atEnd.totalCPUSeconds, decimals: 2),
                    formatted(measurement.atEnd.totalCPUSeconds / two.elapsed * 100, decimals: 1), optional(steady, 2),
                    optional(ratio(steady, aloneSteady), 2), optional(ratio(steady, landed.map(Double.init)), 2, scale: 1000),
                ] + memoryColumns(measurement) + ["\(fleet.givenUp[index])"])
        }
        print(
            "2. Two instances of this build against one (\(label): started together; the split as pg_locks shows it at the end)")
        print(
            table(
                [
                    "run", "member", "servers", "CPU s", "CPU %", "steady CPU s", "x 1", "steady ms/snap", "peak RSS MB",
                    "x 1", "RSS end MB", "anon MB", "file MB", "servers given up",
                ], rows))
        let steadyExpected = Double(servers) * (duration - Double(frequency)) / Double(frequency)
        let perServer = Dictionary(grouping: steadyLog?.entries ?? [], by: \.srvid).mapValues(\.count)
        let counts = Array(perServer.values) + Array(repeating: 0, count: max(0, servers - perServer.count))
        print(
            """

            CPU %: of one core over the run; steady CPU s: from one period in to the end (x 1: against the mean of the
            1 instance runs), per snapshot of the servers it owns at the end;
            servers given up: handed to the other instance while they divided the servers at start.
            cadence, 2 instances: \(formatted(Double(two.log.count)))/\(formatted(two.expected(duration: duration))) snapshots, \
            mean gap \(optional(two.log.meanGap, 3)) s, max gap \(optional(two.log.maxGap, 3)) s, \
            \(two.log.gapsOverLimit) gap(s) > F+1, \(two.log.doubled) gap(s) < F/2, \
            \(two.log.serversSnapshotted)/\(servers) servers snapshotted; from one period in, \
            \(formatted(Double(steadyLog?.count ?? 0)))/\(formatted(steadyExpected)) snapshots, \
            \(counts.min() ?? 0)-\(counts.max() ?? 0) per server
            split (pg_locks at the end): \(fleet.members.map { "\(fleet.serverCount(of: $0))" }.joined(separator: " + ")) \
            of \(servers) servers; \(fleet.owners.count) server lock(s) held by a member
            """)
        print(
            "target  2 instances: cadence held (mean gap within 0.5 %, no gap above F+1, none under F/2, every server)   "
                + verdict(two.log.cadenceHeld && two.log.doubled == 0 && two.log.serversSnapshotted == servers))
        print(
            "target  2 instances: each one's steady CPU about half the 1 instance's (at most "
                + "\(formatted(Self.halfRatio, decimals: 1))x): "
                + steadyRatios.map { optional($0, 2) + "x" }.joined(separator: ", ") + "   "
                + verdict(steadyRatios.allSatisfy { ($0 ?? .infinity) <= Self.halfRatio }))
        print(
            "target  2 instances: each one's peak RSS about half the 1 instance's (at most "
                + "\(formatted(Self.halfRatio, decimals: 1))x): "
                + peakRatios.map { optional($0, 2) + "x" }.joined(separator: ", ") + "   "
                + verdict(peakRatios.allSatisfy { ($0 ?? .infinity) <= Self.halfRatio }))
        print("")
    }

    /// 3. The takeover of a SIGKILLed instance's servers.
    private func reportTakeover(_ label: String, _ takeover: Takeover) {
        let limit = Double(frequency) + Self.takeoverMargin
        let gaps = takeover.gaps
        let resumed = takeover.resumeSeconds
        print(
            "3. SIGKILL of instance #\(takeover.victim + 1)\(takeover.victimWasLeader ? " (the leader)" : "") of \(label)")
        print(
            """
            it owned \(takeover.orphans.count) server(s); the survivor (#\(takeover.survivor + 1)) held all \(servers) \
            server locks after \(optional(takeover.allLocksAfter, 2)) s and the leader lock after \
            \(optional(takeover.leaderAfter, 2)) s (pg_locks read every \(formatted(Takeover.pollSeconds, decimals: 2)) s)
            every orphaned server had a new snapshot committed after \(optional(resumed.max(), 2)) s \
            (\(resumed.count)/\(takeover.orphans.count) within the \(formatted(takeover.timeout)) s watched; \
            median \(optional(quantile(resumed, 0.5), 2)) s: a server is due at its own phase)
            orphans' gap across the kill (snapts to snapts): median \(optional(quantile(gaps, 0.5), 3)) s, \
            p99 \(optional(quantile(gaps, 0.99), 3)) s, max \(optional(gaps.max(), 3)) s; \
            \(gaps.filter { $0 <= Double(frequency) + 1 }.count) on phase (up to F+1), \
            \(gaps.filter { $0 > Double(frequency) + 1 && $0 < 2 * Double(frequency) }.count) late (due during the \
            hand-over, run at once), \(gaps.filter { $0 >= 2 * Double(frequency) }.count) at 2F or more (a period \
            lost), \(gaps.filter { $0 < Double(frequency) / 2 }.count) under F/2
            \(takeover.rephasedLine(limit: Double(frequency) + 1))
            whole run and takeover: \(takeover.wholeLog.doubled) gap(s) under F/2 (a server snapshotted twice in a \
            period), \(takeover.wholeLog.errors.count) server(s) with powa_snapshot_metas.errors, \
            \(takeover.concurrentSnapshotErrors) "Could not lock the powa_snapshot_metas record" in the logs
            survivor: \(formatted(takeover.survivorCPUSeconds, decimals: 2)) s of CPU from the kill to the end of \
            the watch, peak RSS \(formatted(megabytes(takeover.survivorPeakRSSKB), decimals: 1)) MB after it
            """)
        print(
            "target  every server of the killed instance resumed within F + \(formatted(Self.takeoverMargin)) s "
                + "(\(formatted(limit)) s): max \(optional(resumed.max(), 2)) s   "
                + verdict(resumed.count == takeover.orphans.count && (resumed.max() ?? .infinity) <= limit))
        print(
            "target  no server snapshotted twice in a period, none lost a period across the kill (gap < 2F)   "
                + verdict(
                    takeover.wholeLog.doubled == 0 && gaps.count == takeover.orphans.count
                        && gaps.allSatisfy { $0 < 2 * Double(frequency) }))
    }
}

/// The fleet of a run as it stood at the end of its measurement: each collector's member id
/// (from its log's last `fleet: joined`), who owns what and who leads (`pg_locks`), and how many
/// servers each handed over while they divided them (its log's `fleet: giving servers up`).
struct FleetShape {
    /// Member id of each collector, in start order.
    let members: [Int]
    let leader: Int?
    let owners: [Int: Int]
    let givenUp: [Int]

    func serverCount(of member: Int) -> Int { owners.values.filter { $0 == member }.count }

    static func read(_ repository: RunRepository, _ collectors: [StartedCollector]) async throws -> FleetShape {
        let connection = try await BenchBed.connect(repository.connectionString)
        defer { connection.close() }
        let view = try await FleetLockView.read(connection)
        var members: [Int] = []
        var givenUp: [Int] = []
        for collector in collectors {
            let lines = collector.daemon.standardError().split(separator: "\n")
            guard let joined = lines.last(where: { $0.hasSuffix("fleet: joined") }),
                let member = LogParsing.metadata("member", of: joined).flatMap({ Int($0) })
            else { throw BenchError("no `fleet: joined` with a member id in \(collector.logPath)") }
            members.append(member)
            givenUp.append(
                lines.filter { $0.hasSuffix("fleet: giving servers up") }.map { line in
                    guard let open = line.range(of: " servers=["), let close = line[open.upperBound...].firstIndex(of: "]")
                    else { return 0 }
                    return line[open.upperBound..<close].split(separator: ",").count
                }.reduce(0, +))
        }
        return FleetShape(members: members, leader: view.leader, owners: view.owners, givenUp: givenUp)
    }
}

/// The takeover after a SIGKILL: the leader of the fleet (else the first collector) is killed,
/// then `pg_locks` and the run's snapshot log are watched until a survivor holds every server
/// lock and the leader lock and every server of the dead one has a new snapshot, or `timeout`.
struct Takeover {
    static let pollSeconds = 0.25

    let victim: Int
    let victimWasLeader: Bool
    let survivor: Int
    let orphans: [Int]
    let timeout: Double
    /// Seconds from the kill (repository clock).
    var allLocksAfter: Double?
    var leaderAfter: Double?
    /// Per orphan that resumed: seconds from the kill to the commit of its first snapshot after it.
    var resumeSeconds: [Double] = []
    /// Per orphan that resumed: its gap across the kill, last snapshot before to first after.
    var gaps: [Double] = []
    /// Per orphan with a gap: when its next snapshot was due, in seconds from the kill (its last
    /// snapshot's `snapts` + F; negative: already overdue), in `gaps` order.
    var dueAfterKill: [Double] = []
    /// The snapshot log of the whole run, takeover included.
    var wholeLog: SnapshotLog
    var concurrentSnapshotErrors = 0
    var survivorCPUSeconds = 0.0
    var survivorPeakRSSKB = 0

    /// When the orphans with a gap above `limit` were due, against the others.
    func rephasedLine(limit: Double) -> String {
        let pairs = zip(gaps, dueAfterKill)
        let rephased = pairs.filter { $0.0 > limit }.map(\.1)
        let others = pairs.filter { $0.0 <= limit }.map(\.1)
        func range(_ values: [Double]) -> String {
            guard let low = values.min(), let high = values.max() else { return "none" }
            return "\(formatted(low, decimals: 1)) to \(formatted(high, decimals: 1)) s"
        }
        return "due (last snapshot + F) from the kill: those late (gap above \(formatted(limit)) s) \(range(rephased)), "
            + "the others \(range(others))"
    }

    static func run(
        repository: RunRepository, collectors: [StartedCollector], shape: FleetShape, frequency: Int, timeout: Double
    ) async throws -> Takeover {
        let victim = shape.leader.flatMap { shape.members.firstIndex(of: $0) } ?? 0
        let survivor = victim == 0 ? 1 : 0
        let survivorMember = shape.members[survivor]
        let orphans = shape.owners.compactMap { $0.value == shape.members[victim] ? $0.key : nil }.sorted()
        let servers = repository.servers.count
        let watch = try await BenchBed.connect(repository.connectionString)
        defer { watch.close() }
        let survivorBefore = try ProcessStats.read(pid: collectors[survivor].daemon.pid)
        let killedAt = try await watch.query("SELECT extract(epoch FROM clock_timestamp())::float8").rows[0]
            .decode(0, as: Double.self)
        kill(collectors[victim].daemon.pid, SIGKILL)
        note("SIGKILL sent to #\(victim + 1) (pid \(collectors[victim].daemon.pid)), owner of \(orphans.count) servers")

        var allLocksAfter: Double?
        var leaderAfter: Double?
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(timeout)
        let orphanArray = "{" + orphans.map(String.init).joined(separator: ",") + "}"
        while clock.now < deadline {
            let view = try await FleetLockView.read(watch)
            if allLocksAfter == nil, view.serverCount(of: survivorMember) == servers {
                allLocksAfter = view.clock - killedAt
            }
            if leaderAfter == nil, view.leader == survivorMember { leaderAfter = view.clock - killedAt }
            let resumed = try await watch.query(
                """
                SELECT count(DISTINCT srvid) FROM public.bench_snapshots
                WHERE srvid = ANY ($1::int[]) AND logged > to_timestamp($2::float8)
                """, [orphanArray, String(killedAt)]
            ).rows[0].decode(0, as: Int.self)
            if allLocksAfter != nil, leaderAfter != nil, resumed == orphans.count { break }
            try await Task.sleep(for: .seconds(pollSeconds))
        }
        let survivorAfter = try ProcessStats.read(pid: collectors[survivor].daemon.pid)
        let whole = try await repository.snapshotLog()
        var takeover = Takeover(
            victim: victim, victimWasLeader: shape.leader == shape.members[victim], survivor: survivor, orphans: orphans,
            timeout: timeout, allLocksAfter: allLocksAfter, leaderAfter: leaderAfter, wholeLog: whole,
            survivorCPUSeconds: survivorAfter.totalCPUSeconds - survivorBefore.totalCPUSeconds,
            survivorPeakRSSKB: survivorAfter.memory.peakResidentKB)
        let byServer = Dictionary(grouping: whole.entries, by: \.srvid)
        for server in orphans {
            let entries = byServer[server] ?? []
            guard let after = entries.first(where: { $0.committed > killedAt }) else { continue }
            takeover.resumeSeconds.append(after.committed - killedAt)
            if let before = entries.last(where: { $0.committed <= killedAt }) {
                takeover.gaps.append(after.started - before.started)
                takeover.dueAfterKill.append(before.started + Double(frequency) - killedAt)
            }
        }
        takeover.concurrentSnapshotErrors = collectors.map {
            $0.daemon.standardError().components(separatedBy: "Could not lock the powa_snapshot_metas record").count - 1
        }.reduce(0, +)
        return takeover
    }
}
