import ArgumentParser
import Foundation
import Glibc
import TestBed

/// `powa-bench spool`: the repository down for a while under S servers, and back. The scale
/// bed's layout (`ScaleBed`: S `powa_servers` rows over a few remote clusters reached through
/// 127.0.0.x), a bed of its own (/tmp/powa-testbed-bench-spool, ports 5550 on). For each
/// method, a fresh repository database and spool directory: the collector runs until every
/// server has landed a snapshot (the spool reads a server's sources from its last one), one
/// period of steady state, then the repository cluster is stopped (`pg_ctl stop -m fast`) for N
/// periods (each server's snapshots go to the spool) and started again; the spool lands, each
/// server's files at its next scheduled snapshot. Measured: the spool (files, bytes), the time
/// until it is empty, the repository cluster's CPU meanwhile (`ClusterCPU`), the collector's
/// RSS and CPU in each phase (/proc, every half second), what its metrics counted (spooled,
/// landed, dropped), and the history: no server without a snapshot for more than 1.5 periods
/// across the outage, none doubled. `ours`: `skip_known_query_texts` on (a spooled snapshot
/// carries the texts the repository lacked at the server's last landed snapshot); `ours-full`:
/// off (every text, every snapshot), the baseline.
struct SpoolBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spool",
        abstract: "The repository down N periods under S servers: spool size, landing time and repository CPU, collector RSS."
    )

    @OptionGroup var bedOptions: BedOptions

    @Option(help: "Servers to register.")
    var servers = 300

    @Option(help: "Seconds between two snapshots of a server.")
    var frequency = 30

    @Option(name: .customLong("outage-periods"), help: "Periods the repository stays down.")
    var outagePeriods = 6

    @OptionGroup var textMethods: TextMethodOptions

    @Option(
        name: .customLong("spool-max-bytes"),
        help: "spool.max_bytes (default 16 GiB: nothing dropped for want of room).")
    var spoolMaxBytes = 16 << 30

    @Option(name: .customLong("landing-timeout"), help: "Seconds the spool may take to land once the repository is back.")
    var landingTimeout = 900.0

    @Option(
        help:
            "Long statements generated on each remote cluster before each run (StatementsWorkload, step 1), for texts of some size; 0: the bed's own workload."
    )
    var statements = 0

    @Option(help: "This collector's binary.")
    var collector = CollectorKind.defaultBinary

    @OptionGroup var collectorEnvironmentOptions: CollectorEnvironment

    func validate() throws {
        guard frequency >= 5 else { throw ValidationError("--frequency must be at least 5 (powa's minimum)") }
        guard outagePeriods >= 1 else { throw ValidationError("--outage-periods must be at least 1") }
        try textMethods.check(servers: [servers])
    }

    var bedSpec: BedSpec { ScaleBed.spec(servers: servers, clusters: textMethods.clusters, name: "bench-spool", port: 5550) }

    mutating func run() async throws {
        let command = self
        try await BenchBed.with(bedOptions, bedSpec) { bed in try await command.benchmark(on: bed) }
    }

    private func benchmark(on bed: TestBed) async throws {
        try CollectorKind.requireBinary(collector)
        ScaleBed.checkDescriptorLimit(servers: servers)
        var results: [Outage] = []
        for method in textMethods.selectedMethods { results.append(try await runOnce(bed: bed, method: method)) }
        report(results)
    }

    // MARK: One run

    /// The collector's /proc over a phase of a run, sampled every half second.
    private struct Phase {
        let start: ProcessStats
        var end: ProcessStats
        /// The largest VmRSS sampled.
        var peakRSSKB: Int
        let began: ContinuousClock.Instant
        var ended: ContinuousClock.Instant

        var seconds: Double { (ended - began).seconds }
        var cpuSeconds: Double { end.totalCPUSeconds - start.totalCPUSeconds }
    }

    /// What one method's run measured.
    private struct Outage {
        let method: String
        var serversBefore = 0
        var steady: Phase?
        var spooling: Phase?
        var landing: Phase?
        /// The spool at the end of the outage.
        var spool = SpoolDirectory(filesByServer: [:], bytes: 0)
        /// The remotes' pg_stat_statements: entries and text bytes, summed over the clusters.
        var remoteStatements = 0
        var remoteTextBytes = 0
        var landed = false
        var landedLogLine: String?
        var metrics: MetricsScrape?
        var droppedLines = 0
        var problems: [String] = []
        var steadyUsage: ServerUsage?
        var steadySnapshots = 0
        var landingUsage: ServerUsage?
        /// Snapshots committed while the spool landed: spooled and live.
        var landingSnapshots = 0
        var historyGaps = 0
        /// Servers with two snapshots less than half a period apart, and how many such pairs.
        var closeServers = 0
        var closePairs = 0
        var maxGap: Double?
        var doubledRecords = 0
        var peakRSSSinceStartKB = 0
        var exit = ""

        var spooled: Double { metrics?.total("powa_collector_spool_snapshots_spooled_total") ?? 0 }
        var spooledBytes: Double { metrics?.total("powa_collector_spool_bytes_spooled_total") ?? 0 }
        var landedCount: Double { metrics?.total("powa_collector_spool_snapshots_landed_total") ?? 0 }
        var dropped: Double { metrics?.total("powa_collector_spool_snapshots_dropped_total") ?? 0 }
    }

    private func runOnce(bed: TestBed, method: String) async throws -> Outage {
        let full = method == "ours-full"
        let database = "bench_spool" + (full ? "_full" : "")
        let spoolDirectory = "/tmp/powa-bench-spool-\(getpid())-\(method)"
        try? FileManager.default.removeItem(atPath: spoolDirectory)
        defer { try? FileManager.default.removeItem(atPath: spoolDirectory) }
        if statements > 0 {
            note("\(database): generating \(statements) statements on each remote cluster")
            for port in bed.remotePorts {
                let connection = try await BenchBed.connect(bed.connectionString(port: port))
                defer { connection.close() }
                _ = try await StatementsWorkload.generate(on: connection, count: statements, step: 1)
            }
        }
        note("\(database): registering \(servers) servers at frequency \(frequency)")
        let repository = try await RunRepository.create(
            bed: bed, database: database, servers: ScaleBed.servers(servers, ports: bed.remotePorts), frequency: frequency)
        let metricsPort = try LoopbackListener.freePort()
        let metricsURL = "http://127.0.0.1:\(metricsPort)/metrics"
        let settings = textMethods.settings(method: method).merging([
            "spool": "{\"directory\": \"\(spoolDirectory)\", \"max_bytes\": \(spoolMaxBytes)}",
            "http": "{\"listen\": \"127.0.0.1:\(metricsPort)\"}",
        ]) { $1 }
        let watch = try await SnapshotWatch(repository)
        let started = try CollectorDaemon.start(
            .ours(binary: collector), repository: repository, label: database, debug: false, extraSettings: settings,
            environment: collectorEnvironmentOptions.variables)
        let daemon = started.daemon
        note("\(database): collector running as pid \(daemon.pid) (log: \(started.logPath), spool: \(spoolDirectory))")
        var outage = Outage(method: method)
        var repositoryDown = false
        do {
            // Every server's first snapshot (every text, with either method), then a period.
            let (_, everyServer) = try await follow(daemon, for: Double(3 * frequency + 120)) {
                try await watch.everyServerSnapshotted()
            }
            watch.close()
            guard everyServer else { throw BenchError("\(database): not every server landed a snapshot in time") }
            let steadyStart = (ServerUsage.sample(bed), try await repository.clock())
            outage.steady = try await follow(daemon, for: Double(frequency)).phase
            let steadyEnd = (ServerUsage.sample(bed), try await repository.clock())
            outage.steadyUsage = ServerUsage(from: steadyStart.0, to: steadyEnd.0)
            let before = try await repository.snapshotLog()
            outage.serversBefore = before.serversSnapshotted
            outage.steadySnapshots = before.committed(from: steadyStart.1, to: steadyEnd.1).count
            (outage.remoteStatements, outage.remoteTextBytes) = try await remoteTexts(bed)

            // The outage.
            note("\(database): stopping the repository for \(outagePeriods) period(s)")
            let stopped = Date().timeIntervalSince1970
            repositoryDown = true
            try await bed.pgCtl(bed.repositoryDataDirectory, ["stop", "-m", "fast"])
            var lastScan = ContinuousClock.now
            outage.spooling = try await follow(daemon, for: Double(outagePeriods * frequency)) {
                if ContinuousClock.now - lastScan >= .seconds(10) {
                    lastScan = .now
                    note("\(database): \(SpoolDirectory.read(spoolDirectory).files) snapshot(s) spooled")
                }
                return false
            }.phase
            outage.spool = SpoolDirectory.read(spoolDirectory, sizes: true)
            try await bed.pgCtl(bed.repositoryDataDirectory, ["start"])
            repositoryDown = false

            // The landing: until the directory holds no snapshot.
            note("\(database): repository back, \(outage.spool.files) snapshot(s) to land")
            let landingStart = (ServerUsage.sample(bed), try await repository.clock())
            let landing = try await follow(daemon, for: landingTimeout) {
                SpoolDirectory.read(spoolDirectory).files == 0
            }
            let landingEnd = (ServerUsage.sample(bed), try await repository.clock())
            let landedAt = Date().timeIntervalSince1970
            outage.landing = landing.phase
            outage.landed = landing.finished
            outage.landingUsage = ServerUsage(from: landingStart.0, to: landingEnd.0)
            outage.landingSnapshots = try await repository.snapshotLog().committed(from: landingStart.1, to: landingEnd.1)
                .count
            // The log line follows the last file's removal.
            _ = try await follow(daemon, for: 10) { daemon.standardError().contains("spool landed: ") }
            outage.metrics = try await MetricsScrape.read(metricsURL)
            outage.peakRSSSinceStartKB = try ProcessStats.read(pid: daemon.pid).memory.peakResidentKB
            try await checkHistory(repository, from: stopped - 2 * Double(frequency), to: landedAt, into: &outage)
        } catch {
            watch.close()
            _ = await daemon.stop()
            if repositoryDown { try? await bed.pgCtl(bed.repositoryDataDirectory, ["start"]) }
            throw error
        }
        let (status, _) = await daemon.stop()
        outage.exit = ChildProcess.describe(status)
        let log = daemon.standardError()
        let lines = log.split(separator: "\n")
        outage.landedLogLine = lines.last { $0.contains("spool landed: ") }.map(String.init)
        outage.droppedLines = lines.filter { $0.contains("spooled snapshots dropped") }.count
        outage.problems = LogParsing.problems(log, levelField: 1, levels: ["warning", "error", "critical"])
        if !bedOptions.keep { try await repository.drop() }
        return outage
    }

    /// Samples the collector every half second for `seconds` at most, or until `done` says so;
    /// throws if it exits meanwhile.
    private func follow(
        _ daemon: Daemon, for seconds: Double, done: () async throws -> Bool = { false }
    ) async throws -> (phase: Phase, finished: Bool) {
        let start = try ProcessStats.read(pid: daemon.pid)
        var phase = Phase(
            start: start, end: start, peakRSSKB: start.memory.residentKB, began: .now, ended: .now)
        let limit = phase.began + .seconds(seconds)
        var finished = false
        while true {
            guard daemon.isRunning else {
                let (status, _) = await daemon.stop()
                throw BenchError(
                    "the collector exited early (\(ChildProcess.describe(status))): "
                        + String(daemon.standardError().suffix(2000)))
            }
            let stats = try ProcessStats.read(pid: daemon.pid)
            phase.end = stats
            phase.ended = .now
            phase.peakRSSKB = max(phase.peakRSSKB, stats.memory.residentKB)
            if try await done() {
                finished = true
                break
            }
            guard ContinuousClock.now < limit else { break }
            try await Task.sleep(for: min(.milliseconds(500), limit - .now))
        }
        return (phase, finished)
    }

    /// The remotes' pg_stat_statements now, summed over the clusters: entries, text bytes.
    private func remoteTexts(_ bed: TestBed) async throws -> (Int, Int) {
        var statements = 0
        var bytes = 0
        for port in bed.remotePorts {
            let connection = try await BenchBed.connect(bed.connectionString(port: port))
            defer { connection.close() }
            let size = try await StatementsWorkload.measure(on: connection)
            statements += size.statements
            bytes += size.queryBytes
        }
        return (statements, bytes)
    }

    /// Each server's history across the outage, from the remote timestamps of its statement
    /// records (every snapshot stores a record of every statement): the servers with a gap of
    /// more than 1.5 periods between two snapshots, the largest gap, and the records stored twice.
    private func checkHistory(_ repository: RunRepository, from: Double, to: Double, into outage: inout Outage) async throws {
        let connection = try await BenchBed.connect(repository.connectionString)
        defer { connection.close() }
        let row = try await connection.query(
            """
            WITH r AS (
                SELECT srvid, queryid, dbid, userid, (record).ts AS ts FROM powa_statements_history_current
                WHERE srvid > 0 AND (record).ts BETWEEN to_timestamp($1::float8) AND to_timestamp($2::float8)
            ), t AS (SELECT DISTINCT srvid, ts FROM r),
            g AS (SELECT srvid, extract(epoch FROM ts - lag(ts) OVER (PARTITION BY srvid ORDER BY ts))::float8 AS gap FROM t)
            SELECT (SELECT count(DISTINCT srvid) FROM g WHERE gap > $3::float8)::int,
                   (SELECT max(gap) FROM g),
                   (SELECT count(*) - count(DISTINCT (srvid, queryid, dbid, userid, ts)) FROM r)::int,
                   (SELECT count(DISTINCT srvid) FROM g WHERE gap < $4::float8)::int,
                   (SELECT count(*) FROM g WHERE gap < $4::float8)::int
            """, [String(from), String(to), String(1.5 * Double(frequency)), String(0.5 * Double(frequency))]
        ).rows[0]
        outage.historyGaps = try row.decode(0, as: Int.self)
        outage.maxGap = try row.decodeIfPresent(1, as: Double.self)
        outage.doubledRecords = try row.decode(2, as: Int.self)
        outage.closeServers = try row.decode(3, as: Int.self)
        outage.closePairs = try row.decode(4, as: Int.self)
    }

    // MARK: Report

    private func report(_ results: [Outage]) {
        let snapshots = servers * outagePeriods
        var settings = textMethods.summary
        settings += ", spool.max_bytes \(formatted(Double(spoolMaxBytes) / 1_048_576)) MB"
        if !collectorEnvironmentOptions.items.isEmpty {
            settings += ", environment " + collectorEnvironmentOptions.items.joined(separator: " ")
        }
        if collector != CollectorKind.defaultBinary { settings += ", collector \(collector)" }
        print(
            """
            powa-bench spool: \(servers) servers at frequency \(frequency) s over \(textMethods.clusters) cluster(s) at 127.0.0.x, \
            the repository down \(outagePeriods) period(s) (\(outagePeriods * frequency) s, about \(formatted(Double(snapshots))) \
            snapshots to spool); \(settings); \(ProcessInfo.processInfo.activeProcessorCount) CPU(s)

            """)
        func optional(_ value: Double?, decimals: Int = 1) -> String { value.map { formatted($0, decimals: decimals) } ?? "-" }
        func mb(_ kilobytes: Int?) -> String { optional(kilobytes.map(megabytes)) }
        func perSecond(_ count: Double, _ seconds: Double?) -> Double? {
            guard let seconds, seconds > 0 else { return nil }
            return count / seconds
        }
        func ms(_ seconds: Double?, per count: Double) -> String {
            guard let seconds, count > 0 else { return "-" }
            return formatted(seconds / count * 1000, decimals: 1)
        }
        let figures: [(String, (Outage) -> String)] = [
            ("servers with a snapshot before the outage", { "\($0.serversBefore)" }),
            (
                "snapshots landed in the steady period / expected",
                { o in
                    let expected = o.steady.map { Double(servers) * $0.seconds / Double(frequency) }
                    return "\(o.steadySnapshots) / \(optional(expected, decimals: 0))"
                }
            ),
            (
                "remotes' statements / texts kB (all clusters)",
                { "\($0.remoteStatements) / \(formatted(Double($0.remoteTextBytes) / 1024, decimals: 1))" }
            ),
            (
                "spool files / MB when the repository restarts",
                { o in
                    "\(formatted(Double(o.spool.files))) / \(formatted(Double(o.spool.bytes) / 1_048_576, decimals: 1))"
                }
            ),
            ("servers with spooled files", { formatted(Double($0.spool.filesByServer.count)) }),
            ("spooled snapshots (metric)", { formatted($0.spooled) }),
            ("spooled MB (metric)", { formatted($0.spooledBytes / 1_048_576, decimals: 1) }),
            (
                "kB per spooled snapshot",
                { $0.spooled > 0 ? formatted($0.spooledBytes / $0.spooled / 1024, decimals: 1) : "-" }
            ),
            ("spooled after the repository's start", { formatted($0.spooled - Double($0.spool.files)) }),
            ("spooled snapshots landed (metric)", { formatted($0.landedCount) }),
            ("dropped (metric / log lines)", { "\(formatted($0.dropped)) / \($0.droppedLines)" }),
            ("landing s (repository start to spool empty)", { $0.landed ? optional($0.landing?.seconds) : "not landed" }),
            ("spooled snapshots landed per s", { optional(perSecond($0.landedCount, $0.landing?.seconds)) }),
            ("snapshots committed while landing (spooled + live)", { formatted(Double($0.landingSnapshots)) }),
            ("repository CPU s while landing", { optional($0.landingUsage?.repository) }),
            (
                "repository CPU ms per snapshot while landing",
                { ms($0.landingUsage?.repository, per: Double($0.landingSnapshots)) }
            ),
            (
                "repository CPU ms per snapshot, steady (live)",
                { ms($0.steadyUsage?.repository, per: Double($0.steadySnapshots)) }
            ),
            ("collector peak RSS MB: steady", { mb($0.steady?.peakRSSKB) }),
            ("collector peak RSS MB: spooling", { mb($0.spooling?.peakRSSKB) }),
            ("collector peak RSS MB: landing", { mb($0.landing?.peakRSSKB) }),
            (
                "collector RSS MB: outage start / end / spool landed",
                {
                    "\(mb($0.spooling?.start.memory.residentKB)) / \(mb($0.spooling?.end.memory.residentKB)) / \(mb($0.landing?.end.memory.residentKB))"
                }
            ),
            ("collector VmHWM MB (since its start)", { mb($0.peakRSSSinceStartKB) }),
            (
                "collector CPU s / % while spooling",
                { o in
                    o.spooling.map {
                        "\(formatted($0.cpuSeconds, decimals: 2)) / \(formatted($0.cpuSeconds / max($0.seconds, 1) * 100, decimals: 1))"
                    } ?? "-"
                }
            ),
            ("collector CPU ms per spooled snapshot", { ms($0.spooling?.cpuSeconds, per: Double($0.spool.files)) }),
            ("collector CPU s while landing", { optional($0.landing?.cpuSeconds, decimals: 2) }),
            ("collector CPU ms per snapshot, steady", { ms($0.steady?.cpuSeconds, per: Double($0.steadySnapshots)) }),
            ("servers with a history gap > 1.5 F", { "\($0.historyGaps)" }),
            ("largest history gap s", { optional($0.maxGap, decimals: 2) }),
            ("statement records stored twice", { "\($0.doubledRecords)" }),
            ("snapshots < F/2 apart: pairs / servers", { "\($0.closePairs) / \($0.closeServers)" }),
            (
                "machine busy % while landing",
                { o in
                    o.landingUsage.map {
                        formatted(
                            $0.machine / max($0.seconds, 1) / Double(ProcessInfo.processInfo.activeProcessorCount) * 100,
                            decimals: 1)
                    } ?? "-"
                }
            ),
        ]
        var header = ["figure"] + results.map(\.method)
        // ours against ours-full, for the figures the texts change.
        let compared = results.count == 2 && results.map(\.method) == ["ours", "ours-full"]
        let ratios: [String: (Outage) -> Double?] = [
            "spooled MB (metric)": { $0.spooledBytes },
            "kB per spooled snapshot": { $0.spooled > 0 ? $0.spooledBytes / $0.spooled : nil },
            "landing s (repository start to spool empty)": { $0.landing?.seconds },
            "repository CPU s while landing": { $0.landingUsage?.repository },
        ]
        if compared { header.append("ours / ours-full") }
        let cells = figures.map { name, value in
            var row = [name] + results.map(value)
            if compared {
                if let ratio = ratios[name], let after = ratio(results[0]), let before = ratio(results[1]), before > 0 {
                    row.append(formatted(after / before, decimals: 3))
                } else {
                    row.append("")
                }
            }
            return row
        }
        print(table(header, cells))
        print(
            """

            ours: skip_known_query_texts on (a spooled snapshot carries the texts the repository lacked at the server's last
            landed snapshot); ours-full: off (every text in every snapshot). Landing: from the repository's start (pg_ctl -w)
            until the spool directory holds no *.snapshot file; each server's files land at its next scheduled snapshot, so
            it takes at least about a period. Repository CPU: its cluster's (ClusterCPU), live snapshots included.
            History: the remote timestamps of each server's statement records from 2 periods before the outage to the end.

            """)
        for outage in results {
            let nothingLost =
                outage.landed && outage.dropped == 0 && outage.droppedLines == 0 && outage.landedCount == outage.spooled
                && outage.spooled >= Double(outage.spool.files) && outage.historyGaps == 0 && outage.doubledRecords == 0
            print(
                "check   \(outage.method): every spooled snapshot landed, none dropped, no history gap, none doubled   "
                    + verdict(nothingLost))
            if let line = outage.landedLogLine { print("        log: " + line) }
            let problems = outage.problems.filter { !$0.contains("spooling snapshots") }
            if !problems.isEmpty {
                print(
                    "        \(problems.count) warning/error line(s), first: "
                        + problems.prefix(3).map { String($0.prefix(300)) }.joined(separator: " // "))
            }
            print("        stopped: \(outage.exit)")
        }
    }
}
