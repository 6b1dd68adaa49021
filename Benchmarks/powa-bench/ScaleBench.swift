import ArgumentParser
import Foundation
import TestBed

/// `powa-bench scale`: this collector with many servers. S `powa_servers` rows point at a few
/// remote clusters through loopback addresses (server j is cluster j mod C at 127.0.0.(1 + j / C);
/// the clusters listen on 0.0.0.0 and trust 127.0.0.0/8), each snapshotted at frequency F, so
/// that S persistent remote connections and S schedules run in one process. Reports whether the
/// cadence held, the collector's CPU and memory, and the repository cluster's CPU per snapshot
/// (`ClusterCPU`), with `skip_known_query_texts` on (`ours`) then off (`ours-full`, every text
/// at every snapshot), one after the other on the same clusters.
struct ScaleBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scale",
        abstract: "This collector with S servers at frequency F: cadence, CPU and RSS, its own and the repository's."
    )

    @OptionGroup var bedOptions: BedOptions

    @Option(help: "Servers to register, comma-separated for several runs (e.g. 100,1000).")
    var servers = "1000"

    @Option(help: "Seconds between two snapshots of a server.")
    var frequency = 60

    @Option(help: "Seconds each run lasts.")
    var duration = 180.0

    @OptionGroup var textMethods: TextMethodOptions

    @Flag(help: "Run the collector with debug logging (it logs every snapshot).")
    var debug = false

    @Option(help: "This collector's binary.")
    var collector = CollectorKind.defaultBinary

    @OptionGroup var collectorEnvironmentOptions: CollectorEnvironment

    var environment: [String: String] { collectorEnvironmentOptions.variables }
    var collectorEnvironment: [String] { collectorEnvironmentOptions.items }

    /// Targets of the issue.
    static let maximumRSSMB = 100.0

    var serverCounts: [Int] { servers.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func validate() throws {
        guard frequency >= 5 else { throw ValidationError("--frequency must be at least 5 (powa's minimum)") }
        guard duration >= Double(2 * frequency) else { throw ValidationError("--duration must cover two periods at least") }
        try textMethods.check(servers: serverCounts)
    }

    var bedSpec: BedSpec { ScaleBed.spec(servers: serverCounts.max() ?? 1, clusters: textMethods.clusters) }

    mutating func run() async throws {
        let command = self
        try await BenchBed.with(bedOptions, bedSpec) { bed in try await command.benchmark(on: bed) }
    }

    private func benchmark(on bed: TestBed) async throws {
        try CollectorKind.requireBinary(collector)
        ScaleBed.checkDescriptorLimit(servers: serverCounts.max() ?? 0)
        var rows: [[String]] = []
        var verdicts: [String] = []
        var details: [String] = []
        var comparisons: [String] = []
        for count in serverCounts {
            var repository: [String: (run: Double?, steady: Double?)] = [:]
            for method in textMethods.selectedMethods {
                let result = try await runOnce(bed: bed, servers: count, method: method)
                rows.append(result.row)
                verdicts.append(contentsOf: result.verdicts)
                details.append(contentsOf: result.details)
                repository[method] = (result.repositoryPerSnapshot, result.steadyRepositoryPerSnapshot)
            }
            if let after = repository["ours"], let before = repository["ours-full"] {
                func text(_ value: Double?) -> String { value.map { formatted($0 * 1000, decimals: 1) } ?? "-" }
                func ratio(_ a: Double?, _ b: Double?) -> String {
                    guard let a, let b, b > 0 else { return "-" }
                    return formatted(a / b, decimals: 3)
                }
                comparisons.append(
                    "\(count) servers: repository CPU per snapshot, ours-full (before) -> ours (after): over the run "
                        + "\(text(before.run)) -> \(text(after.run)) ms (\(ratio(after.run, before.run))x), steady "
                        + "\(text(before.steady)) -> \(text(after.steady)) ms (\(ratio(after.steady, before.steady))x)")
            }
        }
        var settings = textMethods.summary
        if !collectorEnvironment.isEmpty { settings += ", environment " + collectorEnvironment.joined(separator: " ") }
        if collector != CollectorKind.defaultBinary { settings += ", collector \(collector)" }
        if debug { settings += ", debug" }
        print(
            """
            powa-bench scale: frequency \(frequency) s, \(formatted(duration)) s per run, servers spread over \(textMethods.clusters) \
            cluster(s) at 127.0.0.x; \(settings); \(ProcessInfo.processInfo.activeProcessorCount) CPU(s)

            """)
        print(
            table(
                [
                    "servers", "method", "snapshots/expected", "mean gap s", "gap error %", "max gap s", "gaps > F+1",
                    "CPU s", "CPU %", "CPU ms/snap", "steady ms/snap", "peak RSS MB", "RSS end MB", "threads",
                    "repo xact s", "repo CPU ms/snap", "steady repo ms/snap",
                ], rows))
        print(
            """

            expected: servers x duration / frequency. CPU: user+sys of the collector over the run (% of one CPU);
            steady: from one period in to the end, per snapshot landed in that time. repo xact: mean snapts-to-commit.
            repo CPU: the repository cluster's (postmaster, backends alive or reaped: /proc) per snapshot landed.
            ours: skip_known_query_texts on (texts sent at a server's first snapshot only); ours-full: off.

            """)
        for line in verdicts { print(line) }
        if !comparisons.isEmpty { print("") }
        for line in comparisons { print(line) }
        if !details.isEmpty {
            print("\ndetails:")
            for line in details { print("  " + line) }
        }
    }

    private struct RunResult {
        let row: [String]
        let verdicts: [String]
        let details: [String]
        let repositoryPerSnapshot: Double?
        let steadyRepositoryPerSnapshot: Double?
    }

    private func runOnce(bed: TestBed, servers count: Int, method: String) async throws -> RunResult {
        let full = method == "ours-full"
        let extra = textMethods.settings(method: method)
        let run = try await ScaleRun.measure(
            bed: bed, database: "bench_scale_\(count)" + (full ? "_full" : ""), servers: count, frequency: frequency,
            duration: duration, collectors: [.ours(binary: collector)], extraSettings: extra, environment: environment,
            debug: debug, keep: bedOptions.keep)
        let measurement = run.measurements[0]
        let log = run.log
        let usage = run.usage
        let stats = measurement.atEnd
        let elapsed = run.elapsed
        let cpu = stats.totalCPUSeconds
        let steady = run.steadyCPUPerSnapshot.map { formatted($0 * 1000, decimals: 2) } ?? "-"
        let steadyRepository = run.steadyRepositoryPerSnapshot
        let expected = Double(count) * duration / Double(frequency)
        func perSnapshot(_ value: Double) -> Double? { log.count > 0 ? value / Double(log.count) : nil }
        func optional(_ value: Double?, decimals: Int) -> String { value.map { formatted($0, decimals: decimals) } ?? "-" }
        let row = [
            formatted(Double(count)), method, "\(formatted(Double(log.count)))/\(formatted(expected))",
            optional(log.meanGap, decimals: 3), optional(log.meanGapError.map { $0 * 100 }, decimals: 3),
            optional(log.maxGap, decimals: 3), "\(log.gapsOverLimit)", formatted(cpu, decimals: 2),
            formatted(cpu / elapsed * 100, decimals: 1),
            log.count > 0 ? formatted(cpu / Double(log.count) * 1000, decimals: 2) : "-", steady,
            formatted(megabytes(stats.memory.peakResidentKB), decimals: 1),
            formatted(megabytes(stats.memory.residentKB), decimals: 1), "\(stats.threads)",
            optional(log.meanTransactionSeconds, decimals: 3),
            optional(usage.repository.flatMap(perSnapshot).map { $0 * 1000 }, decimals: 1),
            optional(steadyRepository.map { $0 * 1000 }, decimals: 1),
        ]
        let peakMB = megabytes(stats.memory.peakResidentKB)
        let verdicts = [
            "target  \(count) servers, \(method): cadence held (mean gap within 0.5 % of \(frequency) s, no gap above \(frequency + 1) s, "
                + "\(log.gaps.count) gaps, \(log.serversSnapshotted)/\(count) servers snapshotted)   "
                + verdict(log.cadenceHeld && log.serversSnapshotted == count),
            "target  \(count) servers, \(method): peak RSS under \(formatted(Self.maximumRSSMB)) MB: \(formatted(peakMB, decimals: 1)) MB   "
                + verdict(peakMB < Self.maximumRSSMB),
        ]
        var details = [
            "\(count) servers, \(method): gap p50 \(optional(quantile(log.gaps, 0.5), decimals: 3)) s, p99 \(optional(quantile(log.gaps, 0.99), decimals: 3)) s; "
                + "repo xact p99 \(optional(quantile(log.entries.map(\.transactionSeconds), 0.99), decimals: 3)) s; "
                + "CPU user \(formatted(stats.cpu.user, decimals: 2)) s, system \(formatted(stats.cpu.system, decimals: 2)) s; "
                + "\(stats.openDescriptors) descriptors; RSS at the end: anonymous \(formatted(megabytes(stats.memory.anonymousKB), decimals: 1)) MB, "
                + "files \(formatted(megabytes(stats.memory.fileKB), decimals: 1)) MB; stopped: \(measurement.exit)",
            "\(count) servers, \(method): servers' CPU per snapshot: repository \(optional(usage.repository.flatMap(perSnapshot), decimals: 4)) s, "
                + "remotes \(optional(usage.remotes.flatMap(perSnapshot), decimals: 4)) s; machine busy "
                + "\(formatted(run.machineBusyPercent, decimals: 1)) % "
                + "of \(ProcessInfo.processInfo.activeProcessorCount) CPUs (collector \(formatted(cpu, decimals: 1)) s, repository "
                + "\(optional(usage.repository, decimals: 1)) s, remotes \(optional(usage.remotes, decimals: 1)) s, others "
                + "\(formatted(run.othersCPUSeconds, decimals: 1)) s of CPU)",
        ]
        if !measurement.problems.isEmpty {
            details.append(
                "\(count) servers, \(method): \(measurement.problems.count) warning/error line(s) in \(measurement.logPath), first: "
                    + measurement.problems.prefix(3).joined(separator: " // "))
        }
        if !run.otherBenchmarks.isEmpty {
            details.append(
                "\(count) servers, \(method): WARNING: another powa-bench ran at the same time (pid "
                    + run.otherBenchmarks.sorted().map(String.init).joined(separator: ", ") + "): figures distorted")
        }
        if !log.errors.isEmpty {
            details.append(
                "\(count) servers, \(method): \(log.errors.count) server(s) with powa_snapshot_metas.errors, first: "
                    + log.errors.prefix(2).joined(separator: " // "))
        }
        return RunResult(
            row: row, verdicts: verdicts, details: details,
            repositoryPerSnapshot: usage.repository.flatMap(perSnapshot), steadyRepositoryPerSnapshot: steadyRepository)
    }
}
