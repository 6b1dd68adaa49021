/// When a server's snapshots are due: snapshot k at `origin + k * frequency` on a monotonic
/// clock, so the cadence never drifts with the time snapshots take.
struct SnapshotSchedule: Sendable, Equatable {
    let frequency: Duration
    let origin: ContinuousClock.Instant
    private(set) var index = 0

    init(frequency: Duration, origin: ContinuousClock.Instant) {
        self.frequency = frequency
        self.origin = origin
    }

    /// The first schedule of a worker: in phase with the last snapshot when it is recent (so a
    /// restarted collector keeps the cadence), else at a random offset in [0, frequency), so
    /// that many servers do not snapshot at once.
    static func starting(
        frequency: Duration,
        lastSnapshot: LastSnapshot,
        now: ContinuousClock.Instant,
        randomFraction: Double = .random(in: 0..<1)
    ) -> SnapshotSchedule {
        if case .secondsAgo(let age) = lastSnapshot, age >= 0, Duration.seconds(age) < frequency {
            return SnapshotSchedule(frequency: frequency, origin: now + (frequency - .seconds(age)))
        }
        return SnapshotSchedule(frequency: frequency, origin: now + frequency * randomFraction)
    }

    /// When the next snapshot is due.
    var nextDue: ContinuousClock.Instant { origin + frequency * index }

    /// Moves past the snapshot that was due. A snapshot that overran by more than a period
    /// skips the slots it missed (one late snapshot runs at once, never a burst).
    mutating func advance(now: ContinuousClock.Instant) {
        index += 1
        while nextDue + frequency <= now { index += 1 }
    }
}
