import Foundation
import TestBed

/// One measured run on the scale bed (`ScaleBed`): a fresh repository of S servers at frequency
/// F, one collector or several at once (a fleet sharing its servers) for a while, sampled one
/// period in; what the collectors and the bed's clusters spent, and the snapshots that landed.
struct ScaleRun {
    let frequency: Int
    /// One per collector, in start order.
    let measurements: [DaemonMeasurement]
    /// The bed's clusters over the run.
    let usage: ServerUsage
    /// From the sample (one period in, each server's first snapshot of the run behind) to the
    /// end; nil when no sample was taken.
    let steadyUsage: ServerUsage?
    /// The snapshots committed up to the end of the measurement.
    let log: SnapshotLog
    /// Other `powa-bench` processes seen when the run started or ended (their load distorts it).
    let otherBenchmarks: Set<pid_t>

    /// Registers `count` servers in a new database `database`, runs `collectors` on it for
    /// `duration` seconds, and drops it (unless `keep`). `afterMeasurement` runs once every
    /// figure is read, before the collectors are stopped (the clusters' usage then ends where
    /// the measurement did, not once the collectors have stopped).
    static func measure(
        bed: TestBed,
        database: String,
        servers count: Int,
        frequency: Int,
        duration: Double,
        collectors: [CollectorKind],
        extraSettings: [String: String] = [:],
        environment: [String: String] = [:],
        debug: Bool = false,
        keep: Bool = false,
        afterMeasurement: ((RunRepository, [StartedCollector]) async throws -> Void)? = nil
    ) async throws -> ScaleRun {
        note("\(database): registering \(count) servers at frequency \(frequency)")
        let repository = try await RunRepository.create(
            bed: bed, database: database, servers: ScaleBed.servers(count, ports: bed.remotePorts), frequency: frequency)
        var others = OtherBenchmarks.running()
        let before = ServerUsage.sample(bed)
        var measured: ServerUsage.Sample?
        let hook: (([StartedCollector]) async throws -> Void)? = afterMeasurement.map { body in
            { started in
                measured = ServerUsage.sample(bed)
                try await body(repository, started)
            }
        }
        let measurements = try await CollectorDaemon.runSeveral(
            collectors, repository: repository, seconds: duration, label: database, debug: debug,
            extraSettings: extraSettings, environment: environment, sampleAfter: Double(frequency),
            afterMeasurement: hook)
        let end: ServerUsage.Sample
        if let measured { end = measured } else { end = await ServerUsage.settledSample(bed) }
        others.formUnion(OtherBenchmarks.running())
        let log = try await repository.snapshotLog().committed(to: measurements[0].endClock)
        if !keep { try await repository.drop() }
        return ScaleRun(
            frequency: frequency, measurements: measurements, usage: ServerUsage(from: before, to: end),
            steadyUsage: measurements[0].sample.map { ServerUsage(from: $0.servers, to: end) }, log: log,
            otherBenchmarks: others)
    }

    /// Seconds from the start of the run to the end of its measurement.
    var elapsed: Double { measurements[0].endClock - measurements[0].startClock }

    /// The collectors' CPU seconds over the run, all of them.
    var cpuSeconds: Double { measurements.map(\.atEnd.totalCPUSeconds).reduce(0, +) }

    /// The snapshots committed from the sample on (nil without a sample).
    var steadyLog: SnapshotLog? { measurements[0].sample.map { log.committed(from: $0.clock) } }

    /// A collector's CPU seconds from the sample to the end (nil without a sample).
    func steadyCPUSeconds(_ index: Int) -> Double? {
        let measurement = measurements[index]
        return measurement.sample.map { measurement.atEnd.totalCPUSeconds - $0.stats.totalCPUSeconds }
    }

    /// The collectors' CPU seconds per snapshot landed, over the run.
    var cpuPerSnapshot: Double? { log.count > 0 ? cpuSeconds / Double(log.count) : nil }

    /// The same from the sample on.
    var steadyCPUPerSnapshot: Double? {
        guard let landed = steadyLog?.count, landed > 0 else { return nil }
        let cpu = measurements.indices.compactMap(steadyCPUSeconds).reduce(0, +)
        return cpu / Double(landed)
    }

    /// The repository cluster's CPU seconds per snapshot landed, over the run.
    var repositoryPerSnapshot: Double? {
        guard log.count > 0 else { return nil }
        return usage.repository.map { $0 / Double(log.count) }
    }

    /// The same from the sample on.
    var steadyRepositoryPerSnapshot: Double? {
        guard let landed = steadyLog?.count, landed > 0 else { return nil }
        return steadyUsage?.repository.map { $0 / Double(landed) }
    }

    /// The CPU seconds of the machine's other processes over the run (another benchmark, a
    /// build: what distorts the figures): all but the collectors and the bed's clusters.
    var othersCPUSeconds: Double {
        max(0, usage.machine - cpuSeconds - (usage.repository ?? 0) - (usage.remotes ?? 0))
    }

    /// How busy the machine was over the run, in % of all its CPUs.
    var machineBusyPercent: Double {
        usage.machine / max(usage.seconds, 1) / Double(ProcessInfo.processInfo.activeProcessorCount) * 100
    }

    /// Snapshots expected over the measurement: servers x duration / frequency.
    func expected(duration: Double) -> Double { Double(log.servers) * duration / Double(frequency) }
}
