import ArgumentParser
import Foundation
import TestBed

/// `powa-bench metrics`: the cost of the HTTP endpoint. The same S servers (spread over a few
/// remote clusters as in `powa-bench scale`) are snapshotted in one invocation, each run on a
/// repository database of its own: with `--baseline-collector`, first by that binary (the
/// collector before the endpoint existed), then by this one with no `http.listen` (nothing is
/// counted), then with it, scraping `/metrics` every 2 s once every server has run a period.
/// Reports each run's CPU per snapshot and peak RSS, the scrapes' latency (curl's
/// `time_total`, connection included) and size, and the CPU that other processes used meanwhile
/// (the machine is shared).
struct MetricsBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics",
        abstract: "The HTTP endpoint: /metrics latency with S servers; CPU and RSS with it off and on, and of a baseline."
    )

    @OptionGroup var bedOptions: BedOptions

    @Option(help: "Servers to register.")
    var servers = 1000

    @Option(help: "Seconds between two snapshots of a server.")
    var frequency = 60

    @Option(help: "Seconds each run lasts.")
    var duration = 180.0

    @Option(help: "This collector's binary.")
    var collector = CollectorKind.defaultBinary

    @Option(
        help: """
            A collector binary to run first, without the endpoint, on the same servers: the baseline the endpoint-off \
            run is held to (the collector before the endpoint: git worktree add ../powa-baseline de8ede5, then \
            swift build -c release --scratch-path .build-bench --product powa-collector there).
            """)
    var baselineCollector: String?

    /// Targets of the issue.
    static let maximumScrapeMilliseconds = 50.0
    static let maximumOverhead = 1.1
    static let clusters = 4

    func validate() throws {
        guard frequency >= 5 else { throw ValidationError("--frequency must be at least 5 (powa's minimum)") }
        guard duration >= Double(2 * frequency) else { throw ValidationError("--duration must cover two periods at least") }
        guard (1...(254 * Self.clusters)).contains(servers) else {
            throw ValidationError("--servers: from 1 to \(254 * Self.clusters)")
        }
        if let baselineCollector, !FileManager.default.isExecutableFile(atPath: baselineCollector) {
            throw ValidationError("--baseline-collector: no executable at \(baselineCollector)")
        }
    }

    var bedSpec: BedSpec {
        BedSpec(
            name: "bench-metrics", port: 5530, remotes: Self.clusters,
            remoteConfiguration: [
                "max_connections = \(max(300, servers / Self.clusters + 50))",
                "pg_stat_statements.track_utility = off",
            ],
            repositoryConfiguration: ["track_commit_timestamp = on"],
            listenAddresses: "0.0.0.0")
    }

    mutating func run() async throws {
        let command = self
        try await BenchBed.with(bedOptions, bedSpec) { bed in try await command.benchmark(on: bed) }
    }

    /// What one run measured.
    private struct Run {
        let label: String
        let snapshots: Int
        let cpuSeconds: Double
        /// From one period in to the end, per snapshot landed in that time.
        let steadyCPUPerSnapshotMS: Double?
        let peakRSSMB: Double
        /// CPU seconds of the processes other than the collector and the bed's clusters.
        let othersCPUSeconds: Double
        /// Milliseconds, and bytes of the last body.
        var scrapes: [Double] = []
        var bodyBytes = 0

        var cpuPerSnapshotMS: Double? { snapshots > 0 ? cpuSeconds / Double(snapshots) * 1000 : nil }
    }

    /// The three runs, by label.
    private enum Mode {
        case baseline(String), off, on

        var label: String {
            switch self {
            case .baseline: "baseline"
            case .off: "off"
            case .on: "on"
            }
        }
    }

    private func benchmark(on bed: TestBed) async throws {
        var baseline: Run?
        if let baselineCollector { baseline = try await measure(bed: bed, mode: .baseline(baselineCollector)) }
        let off = try await measure(bed: bed, mode: .off)
        let on = try await measure(bed: bed, mode: .on)
        print(
            """
            powa-bench metrics: \(servers) servers at frequency \(frequency) s over \(Self.clusters) clusters, \
            \(formatted(duration)) s per run; \(ProcessInfo.processInfo.activeProcessorCount) CPU(s)
            """)
        if let baselineCollector { print("baseline: \(baselineCollector)") }
        print("")
        func optional(_ value: Double?, decimals: Int) -> String { value.map { formatted($0, decimals: decimals) } ?? "-" }
        let rows = ([baseline, off, on].compactMap { $0 }).map { run in
            [
                run.label, "\(run.snapshots)", optional(run.cpuPerSnapshotMS, decimals: 2),
                optional(run.steadyCPUPerSnapshotMS, decimals: 2), formatted(run.peakRSSMB, decimals: 1),
                formatted(run.othersCPUSeconds, decimals: 1), run.scrapes.isEmpty ? "-" : "\(run.scrapes.count)",
                optional(quantile(run.scrapes, 0.5), decimals: 1), optional(quantile(run.scrapes, 0.95), decimals: 1),
                optional(run.scrapes.max(), decimals: 1),
                run.bodyBytes > 0 ? formatted(Double(run.bodyBytes) / 1024, decimals: 0) : "-",
            ]
        }
        print(
            table(
                [
                    "run", "snapshots", "CPU ms/snap", "steady ms/snap", "peak RSS MB", "others CPU s", "scrapes", "p50 ms",
                    "p95 ms", "max ms", "body KB",
                ], rows))
        print(
            """

            CPU: user+sys of the collector over the run, per snapshot landed; steady: from one period in to the end.
            others: CPU of every other process of the machine during the run (not the collector, not the bed's clusters).
            baseline: --baseline-collector, without the endpoint; off: this collector without it (nothing is counted).

            """)
        guard let p95 = quantile(on.scrapes, 0.95) else { throw BenchError("no scrape of /metrics was made") }
        func ratio(_ a: Double?, _ b: Double?) -> Double? {
            guard let a, let b, b > 0 else { return nil }
            return a / b
        }
        print(
            "target  /metrics with \(servers) servers answers within \(formatted(Self.maximumScrapeMilliseconds)) ms "
                + "(p95 \(formatted(p95, decimals: 1)) ms)   \(verdict(p95 < Self.maximumScrapeMilliseconds))")
        if let baseline {
            for (what, value) in [
                ("CPU per snapshot", ratio(off.cpuPerSnapshotMS, baseline.cpuPerSnapshotMS)),
                ("peak RSS", ratio(off.peakRSSMB, baseline.peakRSSMB)),
            ] {
                print(
                    "target  endpoint off / baseline: \(what) within \(formatted(Self.maximumOverhead, decimals: 1))x "
                        + "(\(optional(value, decimals: 3))x)   \(verdict((value ?? .infinity) <= Self.maximumOverhead))")
            }
            print(
                "endpoint off / baseline: steady CPU per snapshot "
                    + "\(optional(ratio(off.steadyCPUPerSnapshotMS, baseline.steadyCPUPerSnapshotMS), decimals: 3))x")
        }
        print(
            "endpoint on / off: CPU per snapshot \(optional(ratio(on.cpuPerSnapshotMS, off.cpuPerSnapshotMS), decimals: 2))x, "
                + "steady \(optional(ratio(on.steadyCPUPerSnapshotMS, off.steadyCPUPerSnapshotMS), decimals: 2))x, "
                + "peak RSS \(optional(ratio(on.peakRSSMB, off.peakRSSMB), decimals: 2))x")
    }

    private func measure(bed: TestBed, mode: Mode) async throws -> Run {
        let registered = ScaleBed.servers(servers, ports: bed.remotePorts)
        let label = "bench_metrics_\(mode.label)"
        note("\(label): registering \(servers) servers at frequency \(frequency)")
        let repository = try await RunRepository.create(
            bed: bed, database: label, servers: registered, frequency: frequency)
        let binary: String
        var port: Int?
        switch mode {
        case .baseline(let path): binary = path
        case .off: binary = collector
        case .on:
            binary = collector
            port = try LoopbackListener.freePort()
        }
        let settings = port.map { ["http": "{\"listen\": \"127.0.0.1:\($0)\"}"] } ?? [:]
        let url = port.map { "http://127.0.0.1:\($0)/metrics" }
        var scrapes: [Double] = []
        var bodyBytes = 0
        let clock = ContinuousClock()
        var nextScrape = clock.now + .seconds(frequency + 5)
        let before = ServerUsage.sample(bed)
        let measurement = try await CollectorDaemon.run(
            .ours(binary: binary), repository: repository, seconds: duration, label: label, debug: false,
            extraSettings: settings, sampleAfter: Double(frequency),
            stopWhen: {
                guard let url, clock.now >= nextScrape else { return false }
                nextScrape = clock.now + .seconds(2)
                let (milliseconds, bytes) = try await Self.scrape(url)
                scrapes.append(milliseconds)
                bodyBytes = bytes
                return false
            })
        let usage = await ServerUsage.since(before, bed)
        let log = try await repository.snapshotLog().committed(to: measurement.endClock)
        var steady: Double?
        if let sample = measurement.sample {
            let landed = log.committed(from: sample.clock).count
            if landed > 0 {
                steady = (measurement.atEnd.totalCPUSeconds - sample.stats.totalCPUSeconds) / Double(landed) * 1000
            }
        }
        if !bedOptions.keep { try await repository.drop() }
        let cpu = measurement.atEnd.totalCPUSeconds
        return Run(
            label: mode.label, snapshots: log.count, cpuSeconds: cpu, steadyCPUPerSnapshotMS: steady,
            peakRSSMB: megabytes(measurement.atEnd.memory.peakResidentKB),
            othersCPUSeconds: max(0, usage.machine - cpu - (usage.repository ?? 0) - (usage.remotes ?? 0)),
            scrapes: scrapes, bodyBytes: bodyBytes)
    }

    /// One GET by curl: its total time in milliseconds (connection included) and the body's size.
    static func scrape(_ url: String) async throws -> (Double, Int) {
        let client = try DaemonProcess(
            "/usr/bin/curl", ["-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{time_total} %{size_download}", url])
        let code = await client.wait()
        let fields = client.output.split(separator: " ")
        guard code == 0, fields.count == 2, let seconds = Double(fields[0]), let bytes = Int(fields[1]) else {
            throw BenchError("curl \(url) failed (\(code)): \(client.output)")
        }
        return (seconds * 1000, bytes)
    }
}
