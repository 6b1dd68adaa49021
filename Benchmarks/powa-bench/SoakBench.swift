import ArgumentParser
import Foundation
import TestBed

/// `powa-bench soak`: this collector for a long while under control-channel churn, to show that
/// what it holds stays flat: its RSS, its open descriptors, and its sessions on every server.
///
/// Three remotes at frequency 5 (the default); a RELOAD every 5 s and a FORCE_SNAPSHOT every
/// 2 s (to each server in turn), sent as powa-web sends them (`ControlDriver`), for
/// `--duration`; then, with `--repository-restarts N`, the repository cluster restarted N times
/// (each time until the collector is back and every server snapshotted again) and a settle
/// period. A sample every `--sample-every` s: /proc of the collector, its sessions on every
/// cluster (`CollectorSessions`), the snapshots landed (the run repository's log).
///
/// The baseline is the first sample after `--warm-up`: by then every worker has connected,
/// the repository pool and the caches of the process have filled, and the allocator has its
/// working set. Each later figure is judged against it: RSS within 10 %; descriptors and
/// sessions not more (a leak keeps them), the remotes' sessions the same, while the
/// repository's pool of idle snapshot sessions, which refills on demand, may hold fewer for a
/// while after a restart. With `--heap-probe`, glibc's own count of the bytes in use is sampled
/// too (`HeapProbe`) and `malloc_trim(0)` is called at the end: what RSS then gives back was
/// free memory malloc kept, not objects kept.
struct SoakBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "soak",
        abstract: "This collector under RELOAD / FORCE_SNAPSHOT churn (and repository restarts): RSS, fds, sessions flat."
    )

    @OptionGroup var bedOptions: BedOptions

    @Option(help: "Seconds of the main phase (RELOADs and FORCE_SNAPSHOTs all along).")
    var duration = 600.0

    @Option(help: "Seconds between two snapshots of a server (powa_servers.frequency, at least 5).")
    var frequency = 5

    @Option(help: "Remote clusters (one server each).")
    var remotes = 3

    @Option(name: .customLong("reload-every"), help: "Seconds between two RELOAD requests.")
    var reloadEvery = 5.0

    @Option(
        name: .customLong("force-every"),
        help: "Seconds between two FORCE_SNAPSHOT requests, each to the next server (0: none).")
    var forceEvery = 2.0

    @Option(
        name: .customLong("repository-restarts"),
        help: "After the main phase, restart the repository cluster this many times, then settle.")
    var repositoryRestarts = 0

    @Option(
        help: "Seconds the repository stays down at each restart (0: pg_ctl restart; else stop, wait, start).")
    var outage = 0.0

    @Option(help: "Seconds of the settle period after the restarts.")
    var settle = 60.0

    @Option(name: .customLong("sample-every"), help: "Seconds between two samples.")
    var sampleEvery = 30.0

    @Option(name: .customLong("warm-up"), help: "The baseline is the first sample at or after this many seconds.")
    var warmUp = 60.0

    @Flag(help: "Run the collector with debug logging.")
    var debug = false

    @Flag(
        name: .customLong("heap-probe"),
        help: "Preload a probe into the collector: glibc's bytes in use at each sample, malloc_trim(0) at the end.")
    var heapProbe = false

    @Option(help: "This collector's binary.")
    var collector = CollectorKind.defaultBinary

    @OptionGroup var collectorEnvironmentOptions: CollectorEnvironment

    /// Targets of the issue: RSS within 10 % of the warmed-up start.
    static let rssGrowthLimit = 1.1
    /// How long the collector may take to come back after a repository restart (its backoff
    /// tops at 5 s for the control channel) and to land a snapshot of every server.
    static let restartTimeout = 120.0
    static let database = "bench_soak"

    var environment: [String: String] { collectorEnvironmentOptions.variables }
    var collectorEnvironment: [String] { collectorEnvironmentOptions.items }

    func validate() throws {
        guard frequency >= 5 else { throw ValidationError("--frequency must be at least 5 (powa's minimum)") }
        guard (1...9).contains(remotes) else { throw ValidationError("--remotes must be from 1 to 9") }
        guard reloadEvery > 0 else { throw ValidationError("--reload-every must be positive") }
        guard forceEvery >= 0 else { throw ValidationError("--force-every must not be negative") }
        guard repositoryRestarts >= 0 else { throw ValidationError("--repository-restarts must not be negative") }
        guard sampleEvery >= 1 else { throw ValidationError("--sample-every must be at least 1") }
        guard warmUp >= 0, warmUp < duration else { throw ValidationError("--warm-up must be under --duration") }
        guard settle >= 0 else { throw ValidationError("--settle must not be negative") }
        guard outage >= 0 else { throw ValidationError("--outage must not be negative") }
    }

    var bedSpec: BedSpec {
        BedSpec(
            name: "bench-soak", port: 5520, remotes: remotes,
            remoteConfiguration: ["pg_stat_statements.track_utility = off"],
            repositoryConfiguration: ["track_commit_timestamp = on"])
    }

    mutating func run() async throws {
        let command = self
        try await BenchBed.with(bedOptions, bedSpec) { bed in try await command.benchmark(on: bed) }
    }

    /// One sample of the collector and of its sessions.
    struct Sample {
        let phase: String
        let seconds: Double
        let stats: ProcessStats
        /// Open descriptors: the least of a few readings, as sessions (a reload's short
        /// session has a socket too).
        let descriptors: Int
        /// The repository's first, then each remote's.
        let sessions: [Int]
        /// Snapshots logged so far, by server (in `servers` order).
        let snapshots: [Int]
        let control: ControlDriver.Counts
        let heap: HeapProbe.Reading?
    }

    /// What the end of the run adds to the samples.
    struct Ending {
        /// Per server: snapshots landed in the main phase, and how many its length allows.
        var landed: [Int] = []
        var expected = 0
        /// The control counts once the main phase's answers have arrived.
        var mainControl = ControlDriver.Counts()
        var restartSeconds: [Double] = []
        /// With the heap probe: RSS and the heap just after `malloc_trim(0)`.
        var trimmed: (rssKB: Int, heap: HeapProbe.Reading?)?
        var problems: [String] = []
        var logPath = ""
        var exit = ""
        var snapshotErrors: [String] = []
    }

    private func benchmark(on bed: TestBed) async throws {
        try CollectorKind.requireBinary(collector)
        let servers = bed.remotePorts.enumerated().map { index, port in
            RegisteredServer(hostname: "127.0.0.1", port: port, alias: "remote\(index + 1)")
        }
        let repository = try await RunRepository.create(
            bed: bed, database: Self.database, servers: servers, frequency: frequency)
        try await repository.seedPhases(offsets: RunRepository.evenOffsets(count: servers.count, frequency: frequency))
        let probe = heapProbe ? try await HeapProbe.build() : nil
        let started = try CollectorDaemon.start(
            .ours(binary: collector), repository: repository, label: Self.database, debug: debug,
            environment: environment.merging(probe?.environment ?? [:]) { $1 })
        let daemon = started.daemon
        note("\(Self.database): collector running as pid \(daemon.pid) (log: \(started.logPath))")

        var samples: [Sample] = []
        var ending = Ending()
        ending.logPath = started.logPath
        let counts = Locked(ControlDriver.Counts())
        var driverTask: Task<Void, Never>?
        do {
            try await waitForFirstSnapshots(repository: repository, daemon: daemon)
            let driver = ControlDriver(
                connectionString: repository.connectionString, reloadEvery: reloadEvery, forceEvery: forceEvery,
                serverIDs: repository.servers.map(\.srvid), counts: counts)
            driverTask = Task { await driver.run() }
            let clock = ContinuousClock()
            let start = clock.now
            let startClock = try await repository.clock()
            func sample(_ phase: String) async throws {
                let sample = try await takeSample(
                    phase: phase, seconds: (clock.now - start).seconds, bed: bed, repository: repository,
                    daemon: daemon, counts: counts, probe: probe)
                samples.append(sample)
                note(
                    "\(phase) \(Int(sample.seconds)) s: RSS \(formatted(megabytes(sample.stats.memory.residentKB), decimals: 1)) MB, "
                        + "\(sample.descriptors) fds, sessions \(sample.sessions.map(String.init).joined(separator: " ")), "
                        + "reloads \(sample.control.reloadsOK)/\(sample.control.reloadsSent)")
            }

            // The main phase: a sample every `sampleEvery` s, the last at `duration`.
            var due = 0.0
            while true {
                try await sleep(until: start + .seconds(due), daemon: daemon)
                try await sample("main")
                if due >= duration { break }
                due = min(due + sampleEvery, duration)
            }
            // The answers to the last requests, then the main phase's figures.
            driver.pause()
            ending.mainControl = await settledCounts(counts)
            let mainEndClock = try await repository.clock()
            let log = try await repository.snapshotLog().committed(from: startClock, to: mainEndClock)
            ending.landed = repository.servers.map { server in log.entries.filter { $0.srvid == server.srvid }.count }
            ending.expected = Int(((mainEndClock - startClock) / Double(frequency)).rounded(.down))

            if repositoryRestarts > 0 {
                driver.resume()
                for restart in 1...repositoryRestarts {
                    ending.restartSeconds.append(
                        try await restartRepository(bed: bed, repository: repository, daemon: daemon))
                    try await sample("restart \(restart)")
                }
                let settleStart = clock.now
                var elapsed = 0.0
                while elapsed < settle {
                    elapsed = min(elapsed + sampleEvery, settle)
                    try await sleep(until: settleStart + .seconds(elapsed), daemon: daemon)
                    try await sample("settled")
                }
                driver.pause()
                _ = await settledCounts(counts)
            }
            if let probe {
                let heap = try await probe.trim()
                ending.trimmed = (try ProcessStats.read(pid: daemon.pid).memory.residentKB, heap)
            }
        } catch {
            driverTask?.cancel()
            _ = await daemon.stop()
            throw error
        }
        driverTask?.cancel()
        await driverTask?.value
        let (status, _) = await daemon.stop()
        ending.exit = ChildProcess.describe(status)
        ending.problems = LogParsing.problems(daemon.standardError(), levelField: 1, levels: ["warning", "error", "critical"])
        ending.snapshotErrors = try await repository.snapshotLog().errors
        if !bedOptions.keep { try await repository.drop() }
        printReport(samples: samples, ending: ending, servers: repository.servers, counts: counts.withLock { $0 })
    }

    /// Waits until every server's first snapshot has landed (its phase is within a period).
    private func waitForFirstSnapshots(repository: RunRepository, daemon: Daemon) async throws {
        let limit = ContinuousClock.now + .seconds(Double(frequency) + 60)
        while true {
            let log = try await repository.snapshotLog()
            if log.serversSnapshotted == repository.servers.count { return }
            guard ContinuousClock.now < limit else {
                throw BenchError(
                    "only \(log.serversSnapshotted) of \(repository.servers.count) servers snapshotted within \(frequency + 60) s; "
                        + "errors: \(log.errors.joined(separator: " // "))")
            }
            try await sleep(until: .now + .milliseconds(500), daemon: daemon)
        }
    }

    /// Sleeps until `instant`, checking every second that the collector still runs.
    private func sleep(until instant: ContinuousClock.Instant, daemon: Daemon) async throws {
        while ContinuousClock.now < instant {
            guard daemon.isRunning else {
                let (status, _) = await daemon.stop()
                throw BenchError(
                    "the collector exited early (\(ChildProcess.describe(status))): "
                        + String(daemon.standardError().suffix(2000)))
            }
            try await Task.sleep(for: min(.seconds(1), instant - .now))
        }
    }

    private func takeSample(
        phase: String, seconds: Double, bed: TestBed, repository: RunRepository, daemon: Daemon,
        counts: Locked<ControlDriver.Counts>, probe: HeapProbe?
    ) async throws -> Sample {
        let stats = try ProcessStats.read(pid: daemon.pid)
        let heap = probe?.read()
        var descriptors = stats.openDescriptors
        for _ in 0..<2 {
            try await Task.sleep(for: .milliseconds(300))
            descriptors = min(descriptors, try ProcessStats.read(pid: daemon.pid).openDescriptors)
        }
        let sessions = try await CollectorSessions.count(bed: bed, ports: [bed.repositoryPort] + bed.remotePorts)
        let log = try await repository.snapshotLog()
        let snapshots = repository.servers.map { server in log.entries.filter { $0.srvid == server.srvid }.count }
        return Sample(
            phase: phase, seconds: seconds, stats: stats, descriptors: descriptors, sessions: sessions,
            snapshots: snapshots,
            control: counts.withLock { $0 }, heap: heap)
    }

    /// The counts once every request sent has been answered, or after 15 s (the driver sends
    /// nothing meanwhile).
    private func settledCounts(_ counts: Locked<ControlDriver.Counts>) async -> ControlDriver.Counts {
        let limit = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < limit {
            let now = counts.withLock { $0 }
            if now.reloadsAnswered >= now.reloadsSent && now.forcesAnswered >= now.forcesSent { return now }
            try? await Task.sleep(for: .milliseconds(200))
        }
        return counts.withLock { $0 }
    }

    /// Restarts the repository cluster (`pg_ctl restart -m fast`: every session ended, as in a
    /// real restart; with `--outage`, stopped for that long first, so that snapshots fail and
    /// the collector retries), then waits until the collector's control channel is back and
    /// every server has a snapshot committed after the restart. Returns how long that took,
    /// from the restart (the end of the outage).
    private func restartRepository(bed: TestBed, repository: RunRepository, daemon: Daemon) async throws -> Double {
        let clock = ContinuousClock()
        let before = try await repository.clock()
        if outage > 0 {
            try await bed.pgCtl(bed.repositoryDataDirectory, ["stop", "-m", "fast"])
            try await sleep(until: .now + .seconds(outage), daemon: daemon)
            try await bed.pgCtl(bed.repositoryDataDirectory, ["start"])
        } else {
            try await bed.pgCtl(bed.repositoryDataDirectory, ["restart", "-m", "fast"])
        }
        let start = clock.now
        let limit = start + .seconds(Self.restartTimeout)
        while true {
            try await sleep(until: .now + .milliseconds(500), daemon: daemon)
            if await CollectorSessions.controlChannelConnected(bed: bed),
                let log = try? await repository.snapshotLog().committed(from: before),
                log.serversSnapshotted == repository.servers.count
            {
                return (clock.now - start).seconds
            }
            guard clock.now < limit else {
                throw BenchError("the collector was not back within \(Int(Self.restartTimeout)) s of a repository restart")
            }
        }
    }

    private func printReport(
        samples: [Sample], ending: Ending, servers: [RegisteredServer], counts: ControlDriver.Counts
    ) {
        func mb(_ kilobytes: Int) -> String { formatted(megabytes(kilobytes), decimals: 1) }
        func heapMB(_ bytes: Int?) -> String { bytes.map { formatted(Double($0) / 1_048_576, decimals: 2) } ?? "-" }
        var settings =
            "\(servers.count) server(s) at frequency \(frequency) s; RELOAD every \(formatted(reloadEvery, decimals: 1)) s"
        settings +=
            forceEvery > 0
            ? ", FORCE_SNAPSHOT every \(formatted(forceEvery, decimals: 1)) s (servers in turn)" : ", no FORCE_SNAPSHOT"
        settings += "; \(formatted(duration)) s"
        if repositoryRestarts > 0 {
            settings += ", then \(repositoryRestarts) repository restart(s)"
            if outage > 0 { settings += " (down \(formatted(outage)) s each)" }
            settings += " and \(formatted(settle)) s of settling"
        }
        if !collectorEnvironment.isEmpty { settings += "; environment " + collectorEnvironment.joined(separator: " ") }
        if collector != CollectorKind.defaultBinary { settings += "; collector \(collector)" }
        if debug { settings += "; debug" }
        print("powa-bench soak: \(settings)\n")

        let probed = samples.contains { $0.heap != nil }
        var header = ["phase", "t s", "RSS MB", "anon MB", "HWM MB"]
        if probed { header += ["heap in use MB", "heap free MB"] }
        header += [
            "fds", "threads", "sessions repo " + servers.indices.map { "r\($0 + 1)" }.joined(separator: " "),
            "snapshots", "reloads ok/sent", "forced answered/sent", "CPU s",
        ]
        let rows = samples.map { sample -> [String] in
            let memory = sample.stats.memory
            var row = [
                sample.phase, formatted(sample.seconds), mb(memory.residentKB), mb(memory.anonymousKB),
                mb(memory.peakResidentKB),
            ]
            if probed { row += [heapMB(sample.heap?.inUse), heapMB(sample.heap?.free)] }
            row += [
                "\(sample.descriptors)", "\(sample.stats.threads)",
                sample.sessions.map(String.init).joined(separator: " "),
                sample.snapshots.map(String.init).joined(separator: "/"),
                "\(sample.control.reloadsOK)/\(sample.control.reloadsSent)",
                "\(sample.control.forcesAnswered)/\(sample.control.forcesSent)",
                formatted(sample.stats.totalCPUSeconds, decimals: 1),
            ]
            return row
        }
        print(table(header, rows))
        print(
            """

            RSS, anon (RssAnon), HWM (VmHWM), fds (/proc/<pid>/fd), threads: the collector's /proc. sessions:
            its pg_stat_activity rows (application_name 'PoWA collector - ...', less the RELOAD answer's short
            session) on the repository and each remote. fds and sessions: the least of 3 readings 0.3 s apart
            (a reload's short sessions are left out). snapshots: logged by the run repository, per server.
            reloads ok: RELOAD answered OK; forced: FORCE_SNAPSHOT answered (any status). t: seconds since
            every server's first snapshot.

            """)
        if probed {
            print(
                """
                heap: glibc's mallinfo2() in the collector (preloaded probe): in use = uordblks + hblkhd, free = fordblks.

                """)
        }

        guard let baseline = samples.first(where: { $0.phase == "main" && $0.seconds >= warmUp }),
            let mainEnd = samples.last(where: { $0.phase == "main" })
        else { return }
        var ends = [("end of main phase", mainEnd)]
        if repositoryRestarts > 0, let last = samples.last, last.phase != "main" {
            ends.append(("after \(repositoryRestarts) restart(s)", last))
        }
        let baseLabel = "baseline (t \(formatted(baseline.seconds)) s)"
        for (label, end) in ends {
            let base = baseline.stats.memory.residentKB
            let now = end.stats.memory.residentKB
            let ratio = Double(now) / Double(max(base, 1))
            print(
                "target  \(label): RSS within +10 % of the \(baseLabel): \(mb(base)) -> \(mb(now)) MB "
                    + "(x\(formatted(ratio, decimals: 3)))   " + verdict(ratio <= Self.rssGrowthLimit))
            // Each pooled repository session has its socket: fewer while the pool refills.
            print(
                "target  \(label): open descriptors not more than at the baseline: \(baseline.descriptors) -> "
                    + "\(end.descriptors)   " + verdict(end.descriptors <= baseline.descriptors))
            let names = ["repository"] + servers.map(\.alias)
            let differences = zip(names, zip(baseline.sessions, end.sessions)).map { name, pair in
                "\(name) \(pair.0) -> \(pair.1)"
            }
            // A leak keeps sessions: more than at the baseline. The repository's pool of idle
            // snapshot sessions refills on demand (when snapshots overlap), so after a restart
            // it may hold fewer for a while; each remote has its worker's one session.
            let repositoryHeld = (end.sessions.first ?? 0) <= (baseline.sessions.first ?? 0)
            let remotesHeld = end.sessions.dropFirst().elementsEqual(baseline.sessions.dropFirst())
            var refilling = ""
            if repositoryHeld, end.sessions.first != baseline.sessions.first {
                refilling = " (the repository's pool refills on demand)"
            }
            print(
                "target  \(label): sessions as at the baseline (repository: not more): "
                    + "\(differences.joined(separator: ", "))\(refilling)   " + verdict(repositoryHeld && remotesHeld))
            if let baseHeap = baseline.heap, let endHeap = end.heap {
                print(
                    "info    \(label): heap in use \(heapMB(baseHeap.inUse)) -> \(heapMB(endHeap.inUse)) MB, "
                        + "free in arenas \(heapMB(baseHeap.free)) -> \(heapMB(endHeap.free)) MB, "
                        + "held from the system \(heapMB(baseHeap.system)) -> \(heapMB(endHeap.system)) MB; "
                        + "threads \(baseline.stats.threads) -> \(end.stats.threads)")
            } else {
                print("info    \(label): threads \(baseline.stats.threads) -> \(end.stats.threads)")
            }
        }
        let main = ending.mainControl
        print(
            "target  main phase: every RELOAD answered OK: \(main.reloadsOK)/\(main.reloadsSent) "
                + "(answers: \(describe(main.reloadAnswers)))   "
                + verdict(main.reloadsSent > 0 && main.reloadsOK == main.reloadsSent))
        if forceEvery > 0 {
            print(
                "target  main phase: every FORCE_SNAPSHOT answered: \(main.forcesAnswered)/\(main.forcesSent) "
                    + "(\(describe(main.forceAnswers)))   "
                    + verdict(main.forcesSent > 0 && main.forcesAnswered == main.forcesSent))
        }
        let landed = zip(servers, ending.landed).map { "\($0.alias) \($1)" }.joined(separator: ", ")
        print(
            "target  main phase: snapshots per server at least \(max(0, ending.expected - 1)) (\(ending.expected) periods): "
                + "\(landed)   " + verdict(!ending.landed.isEmpty && ending.landed.allSatisfy { $0 >= ending.expected - 1 }))
        if repositoryRestarts > 0 {
            let times = ending.restartSeconds
            print(
                "info    repository restarts: \(times.count), collector back with a snapshot of every server "
                    + "\(outage > 0 ? "after the outage " : "")after "
                    + "\(formatted(mean(times) ?? 0, decimals: 1)) s on average (max \(formatted(times.max() ?? 0, decimals: 1)) s); "
                    + "whole run: RELOAD \(counts.reloadsOK)/\(counts.reloadsSent) answered OK, FORCE_SNAPSHOT "
                    + "\(counts.forcesAnswered)/\(counts.forcesSent) answered, driver reconnects \(counts.reconnects)")
        }
        if let trimmed = ending.trimmed, let last = samples.last {
            print(
                "info    malloc_trim(0) at the end: RSS \(mb(last.stats.memory.residentKB)) -> \(mb(trimmed.rssKB)) MB "
                    + "(baseline \(mb(baseline.stats.memory.residentKB)) MB); heap in use \(heapMB(trimmed.heap?.inUse)) MB, "
                    + "free in arenas \(heapMB(trimmed.heap?.free)) MB")
        }
        var details = ["collector stopped: \(ending.exit); log: \(ending.logPath)"]
        if !ending.problems.isEmpty {
            details.append(
                "\(ending.problems.count) warning/error line(s) in the log (repository restarts log some), first: "
                    + ending.problems.prefix(3).joined(separator: " // "))
        }
        if !ending.snapshotErrors.isEmpty {
            details.append("powa_snapshot_metas.errors: " + ending.snapshotErrors.prefix(3).joined(separator: " // "))
        }
        print("\ndetails:")
        for line in details { print("  " + line) }
    }

    /// `OK 120, ERROR 3`, most frequent first.
    private func describe(_ answers: [String: Int]) -> String {
        answers.isEmpty ? "none" : answers.sorted { $0.value > $1.value }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")
    }
}
