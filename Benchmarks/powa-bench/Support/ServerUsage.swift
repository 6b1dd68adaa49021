import TestBed

/// The CPU seconds the bed's clusters, and the whole machine, spent between two samples: what
/// a measured run cost the servers (the repository storing the snapshots, the remotes
/// answering), beside what it cost the collector.
struct ServerUsage: Sendable {
    /// nil when a cluster could not be read at either end, or restarted in between (another
    /// postmaster: its counters started over).
    var repository: Double?
    var remotes: Double?
    var machine = 0.0
    var seconds = 0.0
    /// What the remotes sent (`RemoteTraffic`); nil when not counted.
    var remoteBytes: Int?

    struct Sample: Sendable {
        let repository: ClusterCPU?
        let remotes: [ClusterCPU?]
        let machine: Double
        let remoteBytes: Int?
        let instant: ContinuousClock.Instant
    }

    static func sample(_ bed: TestBed) -> Sample {
        Sample(
            repository: ClusterCPU.read(dataDirectory: bed.repositoryDataDirectory),
            remotes: bed.remoteDataDirectories.map { ClusterCPU.read(dataDirectory: $0) },
            machine: MachineCPU.busySeconds(), remoteBytes: RemoteTraffic.bytes(), instant: .now)
    }

    /// A sample once the measured process has stopped: its backends have then exited and been
    /// reaped (or are still counted alive), and what they did is in.
    static func settledSample(_ bed: TestBed) async -> Sample {
        try? await Task.sleep(for: .milliseconds(500))
        return sample(bed)
    }

    /// From `start` to now, once the measured process has stopped.
    static func since(_ start: Sample, _ bed: TestBed) async -> ServerUsage {
        ServerUsage(from: start, to: await settledSample(bed))
    }

    init(from start: Sample, to end: Sample) {
        repository = Self.difference(start.repository, end.repository)
        if start.remotes.count == end.remotes.count {
            let each = zip(start.remotes, end.remotes).map { Self.difference($0, $1) }
            remotes = each.contains { $0 == nil } ? nil : each.reduce(0) { $0 + ($1 ?? 0) }
        }
        machine = end.machine - start.machine
        if let first = start.remoteBytes, let last = end.remoteBytes { remoteBytes = last - first }
        seconds = (end.instant - start.instant).seconds
    }

    private static func difference(_ start: ClusterCPU?, _ end: ClusterCPU?) -> Double? {
        guard let start, let end, start.postmaster == end.postmaster else { return nil }
        return end.seconds - start.seconds
    }
}
