import ArgumentParser
import Foundation
import TestBed

/// `powa-bench metrics`: the cost of the HTTP endpoint. The same S servers (spread over a few
/// remote clusters as in `powa-bench scale`) are snapshotted twice in one invocation, first
/// with no `http.listen` (nothing is counted: the collector as it was before the endpoint),
/// then with it, scraping `/metrics` every 2 s once every server has run a period; reports the
/// collector's CPU per snapshot and peak RSS of both runs, and the scrapes' latency (curl's
/// `time_total`, connection included) and size.
struct MetricsBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics",
        abstract: "The HTTP endpoint: /metrics latency with S servers; CPU and RSS with it off and on."
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

    private struct Run {
        let label: String
        let snapshots: Int
        let cpuSeconds: Double
        let peakRSSMB: Double
        /// Milliseconds, and bytes of the last body.
        var scrapes: [Double] = []
        var bodyBytes = 0

        var cpuPerSnapshotMS: Double? { snapshots > 0 ? cpuSeconds / Double(snapshots) * 1000 : nil }
    }

    private func benchmark(on bed: TestBed) async throws {
        let off = try await measure(bed: bed, http: false)
        let on = try await measure(bed: bed, http: true)
        print(
            """
            powa-bench metrics: \(servers) servers at frequency \(frequency) s over \(Self.clusters) clusters, \
            \(formatted(duration)) s per run; \(ProcessInfo.processInfo.activeProcessorCount) CPU(s)

            """)
        func optional(_ value: Double?, decimals: Int) -> String { value.map { formatted($0, decimals: decimals) } ?? "-" }
        let rows = [off, on].map { run in
            [
                run.label, "\(run.snapshots)", optional(run.cpuPerSnapshotMS, decimals: 2), formatted(run.peakRSSMB, decimals: 1),
                run.scrapes.isEmpty ? "-" : "\(run.scrapes.count)", optional(quantile(run.scrapes, 0.5), decimals: 1),
                optional(quantile(run.scrapes, 0.95), decimals: 1), optional(run.scrapes.max(), decimals: 1),
                run.bodyBytes > 0 ? formatted(Double(run.bodyBytes) / 1024, decimals: 0) : "-",
            ]
        }
        print(
            table(
                ["http", "snapshots", "CPU ms/snap", "peak RSS MB", "scrapes", "p50 ms", "p95 ms", "max ms", "body KB"], rows))
        guard let p95 = quantile(on.scrapes, 0.95) else { throw BenchError("no scrape of /metrics was made") }
        let cpuRatio = (on.cpuPerSnapshotMS ?? 0) / max(off.cpuPerSnapshotMS ?? 1, 1e-9)
        let rssRatio = on.peakRSSMB / max(off.peakRSSMB, 1e-9)
        print(
            """

            target  /metrics with \(servers) servers answers within \(formatted(Self.maximumScrapeMilliseconds)) ms \
            (p95 \(formatted(p95, decimals: 1)) ms)   \(verdict(p95 < Self.maximumScrapeMilliseconds))
            endpoint on / off: CPU per snapshot \(formatted(cpuRatio, decimals: 2))x, peak RSS \(formatted(rssRatio, decimals: 2))x \
            (off is the collector without the endpoint: nothing is counted)
            """)
    }

    private func measure(bed: TestBed, http: Bool) async throws -> Run {
        let registered = ScaleBed.servers(servers, ports: bed.remotePorts)
        let label = "bench_metrics_\(http ? "on" : "off")"
        note("\(label): registering \(servers) servers at frequency \(frequency)")
        let repository = try await RunRepository.create(
            bed: bed, database: label, servers: registered, frequency: frequency)
        let port = try LoopbackListener.freePort()
        var scrapes: [Double] = []
        var bodyBytes = 0
        let clock = ContinuousClock()
        let firstScrape = clock.now + .seconds(frequency + 5)
        var nextScrape = firstScrape
        let measurement = try await CollectorDaemon.run(
            .ours(binary: collector), repository: repository, seconds: duration, label: label, debug: false,
            extraSettings: http ? ["http": "{\"listen\": \"127.0.0.1:\(port)\"}"] : [:], sampleAfter: Double(frequency),
            stopWhen: {
                guard http, clock.now >= nextScrape else { return false }
                nextScrape = clock.now + .seconds(2)
                let (milliseconds, bytes) = try await Self.scrape("http://127.0.0.1:\(port)/metrics")
                scrapes.append(milliseconds)
                bodyBytes = bytes
                return false
            })
        let log = try await repository.snapshotLog().committed(to: measurement.endClock)
        if !bedOptions.keep { try await repository.drop() }
        return Run(
            label: http ? "on" : "off", snapshots: log.count, cpuSeconds: measurement.atEnd.totalCPUSeconds,
            peakRSSMB: megabytes(measurement.atEnd.memory.peakResidentKB), scrapes: scrapes, bodyBytes: bodyBytes)
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
