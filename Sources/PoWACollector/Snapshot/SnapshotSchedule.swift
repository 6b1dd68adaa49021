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

    /// The first schedule of a worker, from the age of the server's last snapshot:
    /// - less than a period: in phase with it, so a restarted collector or a server's new owner
    ///   keeps the cadence;
    /// - one to two periods: the snapshot that fell due meanwhile (during a hand-over, or a
    ///   short restart) runs within `catchUpWindow`, early enough that no period is lost,
    ///   spread so that the servers of a whole collector do not all start in the same instant;
    /// - older, or none: at a random offset in [0, frequency), so that many servers do not
    ///   snapshot at once after a long outage.
    static func starting(
        frequency: Duration,
        lastSnapshot: LastSnapshot,
        now: ContinuousClock.Instant,
        randomFraction: Double = .random(in: 0..<1)
    ) -> SnapshotSchedule {
        if case .secondsAgo(let seconds) = lastSnapshot, seconds >= 0 {
            let age = Duration.seconds(seconds)
            if age < frequency {
                return SnapshotSchedule(frequency: frequency, origin: now + (frequency - age))
            }
            if age < frequency * 2 {
                let window = min(frequency * 2 - age, catchUpWindow)
                return SnapshotSchedule(frequency: frequency, origin: now + window * randomFraction)
            }
        }
        return SnapshotSchedule(frequency: frequency, origin: now + frequency * randomFraction)
    }

    /// How long a late snapshot may wait at most after its worker starts: short against any
    /// frequency powa allows (a minute by default), long enough to spread a thousand workers.
    static let catchUpWindow = Duration.seconds(5)

    /// When the next snapshot is due.
    var nextDue: ContinuousClock.Instant { origin + frequency * index }

    /// Before a due snapshot: the slots missed entirely (while the worker was held back, its
    /// process frozen, the repository out) are skipped, so that this late snapshot stands for
    /// the latest slot due and the next one is a period after that slot: one late snapshot,
    /// never a burst of them in the same instant.
    mutating func skipMissed(now: ContinuousClock.Instant) {
        while nextDue + frequency <= now { index += 1 }
    }

    /// Moves past the snapshot that was due. A snapshot that overran by more than a period
    /// skips the slots it missed (one late snapshot runs at once, never a burst).
    mutating func advance(now: ContinuousClock.Instant) {
        index += 1
        while nextDue + frequency <= now { index += 1 }
    }
}
