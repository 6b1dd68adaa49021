import Foundation
import Glibc
import TestBed

/// A collector the benchmark runs as a child process: this project's, or the Python
/// powa-collector 1.3.2 from a venv.
enum CollectorKind: Sendable {
    case ours(binary: String)
    case python(venv: String)

    var label: String {
        switch self {
        case .ours: "ours"
        case .python: "python 1.3.2"
        }
    }

    /// The release build of this package's collector (build it with
    /// `swift build -c release --scratch-path .build-bench --product powa-collector`).
    static var defaultBinary: String {
        TestBed.packageRoot.appendingPathComponent(".build-bench/release/powa-collector").path
    }

    /// Throws, saying how to build it, when there is no collector at `binary`.
    static func requireBinary(_ binary: String) throws {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw BenchError(
                "no collector at \(binary): swift build -c release --scratch-path .build-bench --product powa-collector")
        }
    }
}

/// What was measured of one collector run.
struct DaemonMeasurement: Sendable {
    /// /proc just before the collector was stopped.
    let atEnd: ProcessStats
    /// /proc/<pid>/smaps_rollup at the same moment.
    let smaps: [String: Int]
    /// The collector's /proc, the repository's clock and the bed's clusters' CPU at a moment
    /// of the run, when asked (`sampleAfter`, `sampleWhen`): the start of a steady state, or
    /// just before a first snapshot is due.
    let sample: DaemonSample?
    /// The repository's clock when the run started and just before the collector was stopped.
    let startClock: Double
    let endClock: Double
    /// The wall time of each snapshot, from the collector's own debug log.
    let wallTimes: [Double]
    /// The log's warning and error lines.
    let problems: [String]
    /// How it exited once stopped (`ChildProcess.describe`).
    let exit: String
    /// Where its log is.
    let logPath: String
}

/// A moment of a collector's run.
struct DaemonSample: Sendable {
    let stats: ProcessStats
    /// The repository's clock (epoch seconds), to count the snapshots committed after it.
    let clock: Double
    let servers: ServerUsage.Sample
}

/// A collector started by `CollectorDaemon.start`: the process, and where its log is.
struct StartedCollector: Sendable {
    let daemon: Daemon
    let logPath: String
}

/// Runs one collector against a run's repository for a while (`seconds`, or until `stopWhen`,
/// checked every half second, says so), and measures it.
enum CollectorDaemon {
    /// Starts a collector on `repository` in `/tmp/powa-bench-run-<label>` (its configuration,
    /// an empty HOME, its log), for a benchmark that measures it in a loop of its own.
    static func start(
        _ kind: CollectorKind,
        repository: RunRepository,
        label: String,
        debug: Bool = true,
        extraSettings: [String: String] = [:],
        environment: [String: String] = [:]
    ) throws -> StartedCollector {
        let directory = "/tmp/powa-bench-run-\(label)"
        try? FileManager.default.removeItem(atPath: directory)
        let home = directory + "/home"
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        let settings =
            ["\"repository\": {\"dsn\": \"\(repository.dsn)\"}", "\"debug\": \(debug)", "\"use_server_alias\": false"]
            + extraSettings.sorted { $0.key < $1.key }.map { "\"\($0.key)\": \($0.value)" }
        let configurationPath = directory + "/powa-collector.conf"
        try ("{" + settings.joined(separator: ", ") + "}\n").write(
            toFile: configurationPath, atomically: true, encoding: .utf8)
        let command: [String]
        switch kind {
        case .ours(let binary):
            try CollectorKind.requireBinary(binary)
            command = [binary, "--config", configurationPath]
        case .python(let venv):
            // It has no --config: it takes ./powa-collector.conf unless an earlier file of its
            // search path exists; HOME is an empty directory, and /etc must have none.
            guard !FileManager.default.fileExists(atPath: "/etc/powa-collector.conf") else {
                throw BenchError("/etc/powa-collector.conf exists: the Python collector would use it")
            }
            command = [venv + "/bin/python3", venv + "/bin/powa-collector.py"]
        }
        let logPath = directory + "/collector.log"
        let daemon = try Daemon(
            command, directory: directory,
            environment: environment.merging(["HOME": home, "PYTHONUNBUFFERED": "1"]) { $1 },
            standardOutputPath: logPath, standardErrorPath: logPath)
        return StartedCollector(daemon: daemon, logPath: logPath)
    }

    static func run(
        _ kind: CollectorKind,
        repository: RunRepository,
        seconds: Double,
        label: String,
        debug: Bool = true,
        extraSettings: [String: String] = [:],
        environment: [String: String] = [:],
        sampleAfter: Double? = nil,
        sampleWhen: (() async throws -> Bool)? = nil,
        stopWhen: (() async throws -> Bool)? = nil
    ) async throws -> DaemonMeasurement {
        try await runSeveral(
            [kind], repository: repository, seconds: seconds, label: label, debug: debug, extraSettings: extraSettings,
            environment: environment, sampleAfter: sampleAfter, sampleWhen: sampleWhen, stopWhen: stopWhen)[0]
    }

    /// Runs several collectors at once on the same repository (a fleet: they share its
    /// servers), measured over the same span, each in `/tmp/powa-bench-run-<label>-<n>` (one
    /// alone: `<label>`). Their samples are taken at the same moment. `afterMeasurement`, when
    /// given, runs once every figure is read and before they are stopped, with the daemons in
    /// start order: a benchmark of its own on the running fleet (kill one, time the takeover).
    static func runSeveral(
        _ kinds: [CollectorKind],
        repository: RunRepository,
        seconds: Double,
        label: String,
        debug: Bool = true,
        extraSettings: [String: String] = [:],
        environment: [String: String] = [:],
        sampleAfter: Double? = nil,
        sampleWhen: (() async throws -> Bool)? = nil,
        stopWhen: (() async throws -> Bool)? = nil,
        afterMeasurement: (([StartedCollector]) async throws -> Void)? = nil
    ) async throws -> [DaemonMeasurement] {
        let startClock = try await repository.clock()
        var collectors: [StartedCollector] = []
        do {
            for (index, kind) in kinds.enumerated() {
                let name = kinds.count == 1 ? label : "\(label)-\(index + 1)"
                let started = try start(
                    kind, repository: repository, label: name, debug: debug, extraSettings: extraSettings,
                    environment: environment)
                collectors.append(started)
                note(
                    "\(name): \(kind.label) running as pid \(started.daemon.pid) for \(stopWhen == nil ? "" : "at most ")"
                        + "\(Int(seconds)) s (log: \(started.logPath))")
            }
        } catch {
            for collector in collectors { _ = await collector.daemon.stop() }
            throw error
        }
        let daemons = collectors.map(\.daemon)
        func stopAll() async { for daemon in daemons { _ = await daemon.stop() } }

        let clock = ContinuousClock()
        let start = clock.now
        let end = start + .seconds(seconds)
        var samples: [DaemonSample]?
        var lastProgress = start
        while clock.now < end {
            if let exited = daemons.firstIndex(where: { !$0.isRunning }) {
                let (status, _) = await daemons[exited].stop()
                await stopAll()
                throw BenchError(
                    "\(label): a collector exited early (\(ChildProcess.describe(status))): "
                        + String(daemons[exited].standardError().suffix(2000)))
            }
            if samples == nil {
                var due = false
                if let after = sampleAfter, clock.now >= start + .seconds(after) { due = true }
                if !due, let sampleWhen, try await sampleWhen() { due = true }
                if due {
                    let stats = try daemons.map { try ProcessStats.read(pid: $0.pid) }
                    let moment = try await repository.clock()
                    let servers = ServerUsage.sample(repository.bed)
                    samples = stats.map { DaemonSample(stats: $0, clock: moment, servers: servers) }
                }
            }
            if let stopWhen, try await stopWhen() { break }
            if clock.now - lastProgress >= .seconds(30) {
                lastProgress = clock.now
                let figures = try daemons.map { daemon in
                    let stats = try ProcessStats.read(pid: daemon.pid)
                    return "CPU \(formatted(stats.totalCPUSeconds, decimals: 2)) s, "
                        + "RSS \(formatted(megabytes(stats.memory.residentKB), decimals: 1)) MB"
                }
                note("\(label): \(Int((clock.now - start).seconds)) s, " + figures.joined(separator: "; "))
            }
            try await Task.sleep(for: min(.milliseconds(500), end - clock.now))
        }
        let atEnd = try daemons.map { try ProcessStats.read(pid: $0.pid) }
        let smaps = daemons.map { ProcessStats.smapsRollup(pid: $0.pid) }
        let endClock = try await repository.clock()
        if let afterMeasurement {
            do {
                try await afterMeasurement(collectors)
            } catch {
                await stopAll()
                throw error
            }
        }
        var measurements: [DaemonMeasurement] = []
        for (index, collector) in collectors.enumerated() {
            let (status, _) = await collector.daemon.stop()
            let log = collector.daemon.standardError()
            let wallTimes: [Double]
            let problems: [String]
            switch kinds[index] {
            case .ours:
                wallTimes = LogParsing.oursSnapshotSeconds(log)
                problems = LogParsing.problems(log, levelField: 1, levels: ["warning", "error", "critical"])
            case .python:
                wallTimes = LogParsing.pythonSnapshotSeconds(log)
                problems = LogParsing.problems(log, levelField: 3, levels: ["WARNING", "ERROR", "CRITICAL"])
            }
            measurements.append(
                DaemonMeasurement(
                    atEnd: atEnd[index], smaps: smaps[index], sample: samples?[index], startClock: startClock,
                    endClock: endClock, wallTimes: wallTimes, problems: problems, exit: ChildProcess.describe(status),
                    logPath: collector.logPath))
        }
        return measurements
    }
}

/// Reading the collectors' logs.
enum LogParsing {
    /// Ours: `... debug powa-collector: seconds=1.23 sources=11/11 worker=... snapshot taken`.
    static func oursSnapshotSeconds(_ log: String) -> [Double] {
        log.split(separator: "\n").compactMap { line -> Double? in
            guard line.hasSuffix("snapshot taken") else { return nil }
            return metadata("seconds", of: line).flatMap { Double($0) }
        }
    }

    /// Ours: the `snapshot taken` line of each worker's first snapshot, by worker.
    static func oursFirstSnapshots(_ log: String) -> [String: Substring] {
        var first: [String: Substring] = [:]
        for line in log.split(separator: "\n") where line.hasSuffix("snapshot taken") {
            if let worker = metadata("worker", of: line), first[worker] == nil { first[worker] = line }
        }
        return first
    }

    /// The value of ` key=value` in one of our log lines.
    static func metadata(_ key: String, of line: Substring) -> String? {
        guard let range = line.range(of: " \(key)=") else { return nil }
        return String(line[range.upperBound...].prefix { !$0.isWhitespace })
    }

    /// The first snapshot of each worker, in seconds. Ours: its `snapshot taken` line. Python:
    /// the first snapshot reuses the repository connection opened at start-up, so it has no
    /// `Connecting on repository...`: from the worker's first `Working on <source>` (its first
    /// source, after two version queries and the list of sources: milliseconds) to its first
    /// `Committing transaction`.
    static func firstSnapshotSeconds(_ log: String, kind: CollectorKind) -> [Double] {
        switch kind {
        case .ours:
            return oursFirstSnapshots(log).values.compactMap { metadata("seconds", of: $0).flatMap { Double($0) } }
        case .python:
            var started: [Substring: Double] = [:]
            var seconds: [Substring: Double] = [:]
            for line in log.split(separator: "\n") {
                let fields = line.split(separator: " ", maxSplits: 4, omittingEmptySubsequences: true)
                guard fields.count == 5, let time = timestamp(date: fields[0], time: fields[1]) else { continue }
                let thread = fields[2]
                if line.contains(": Working on "), started[thread] == nil {
                    started[thread] = time
                } else if line.contains("Committing transaction"), let begin = started[thread], seconds[thread] == nil {
                    seconds[thread] = time - begin
                }
            }
            return Array(seconds.values)
        }
    }

    /// Python (debug): per worker thread, from `Connecting on repository...` (its repository
    /// connection is opened for each snapshot, but the first) to the next `Committing transaction`. Lines
    /// look like `2024-05-01 10:00:00,123 127.0.0.1:5501 DEBUG : Connecting on repository... `.
    static func pythonSnapshotSeconds(_ log: String) -> [Double] {
        var started: [Substring: Double] = [:]
        var seconds: [Double] = []
        for line in log.split(separator: "\n") {
            let fields = line.split(separator: " ", maxSplits: 4, omittingEmptySubsequences: true)
            guard fields.count == 5, let time = timestamp(date: fields[0], time: fields[1]) else { continue }
            let thread = fields[2]
            if line.contains("Connecting on repository...") {
                started[thread] = time
            } else if line.contains("Spreading snapshot") || line.contains("Retrieved last snapshot time") {
                // At start-up the connection is opened before the first sleep: that first
                // snapshot has no start of its own, and is left out.
                started[thread] = nil
            } else if line.contains("Committing transaction"), let begin = started.removeValue(forKey: thread) {
                seconds.append(time - begin)
            }
        }
        return seconds
    }

    /// `2024-05-01` and `10:00:00,123` as seconds since the epoch (the zone does not matter:
    /// only differences are used).
    static func timestamp(date: Substring, time: Substring) -> Double? {
        let d = date.split(separator: "-").compactMap { Int($0) }
        let t = time.split(whereSeparator: { $0 == ":" || $0 == "," }).compactMap { Int($0) }
        guard d.count == 3, t.count == 4 else { return nil }
        // Days from the civil date (Howard Hinnant's algorithm).
        let year = d[1] <= 2 ? d[0] - 1 : d[0]
        let era = (year >= 0 ? year : year - 399) / 400
        let yearOfEra = year - era * 400
        let dayOfYear = (153 * (d[1] + (d[1] > 2 ? -3 : 9)) + 2) / 5 + d[2] - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        return Double(days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) + Double(t[3]) / 1000
    }

    /// Lines whose level (the `levelField`th space-separated field, up to a colon: Python pads
    /// its levels to six characters before one, `ERROR :` but `WARNING:`) is one of `levels`.
    static func problems(_ log: String, levelField: Int, levels: Set<String>) -> [String] {
        log.split(separator: "\n").filter { line in
            let fields = line.split(separator: " ", maxSplits: levelField + 1, omittingEmptySubsequences: true)
            return fields.count > levelField && levels.contains(String(fields[levelField].prefix { $0 != ":" }))
        }.map(String.init)
    }
}

/// The Python powa-collector 1.3.2 in a venv, installed with pip when missing.
enum PythonCollector {
    static let defaultVenv = "/tmp/powa-bench-venv"
    static let requirements = ["powa-collector==1.3.2", "psycopg2-binary"]

    /// Makes sure `venv` holds powa-collector 1.3.2 and psycopg2; returns psycopg2's libpq version.
    static func ensure(venv: String) async throws -> String {
        let python = venv + "/bin/python3"
        let check = "import powa_collector, psycopg2; print(powa_collector.getVersion(), psycopg2.__libpq_version__)"
        if FileManager.default.fileExists(atPath: venv + "/bin/powa-collector.py"),
            let outcome = try? await ChildProcess.run(python, ["-c", check]), outcome.succeeded
        {
            return outcome.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        note("installing \(requirements.joined(separator: " ")) into \(venv)")
        var created = try await ChildProcess.run("/usr/bin/python3", ["-m", "venv", venv])
        if !created.succeeded {
            note("python3 -m venv failed; installing Debian's python3-venv")
            let apt = try await ChildProcess.shell(
                "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv",
                environment: [:])
            guard apt.succeeded else { throw BenchError("could not install python3-venv: \(apt.standardError)") }
            created = try await ChildProcess.run("/usr/bin/python3", ["-m", "venv", venv])
            guard created.succeeded else { throw BenchError("python3 -m venv \(venv) failed: \(created.standardError)") }
        }
        let pip = try await ChildProcess.run(venv + "/bin/pip", ["install", "-q"] + requirements)
        guard pip.succeeded else { throw BenchError("pip install failed: \(pip.standardError)") }
        let outcome = try await ChildProcess.run(python, ["-c", check])
        guard outcome.succeeded else { throw BenchError("the venv \(venv) is not usable: \(outcome.standardError)") }
        return outcome.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
