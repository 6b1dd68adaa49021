import PostgresClient
import Synchronization

/// Bounds how many snapshots hold a repository session at once, with the two lanes of
/// `SnapshotSlots`: waiters are served in order, per lane, and can be cancelled.
final class SnapshotLimiter: Sendable {
    private struct State {
        var slots: SnapshotSlots
        var waiters: [UInt64: CheckedContinuation<Void, any Error>] = [:]
        var nextID: UInt64 = 0
    }

    private let state: Mutex<State>

    init(permits: Int) {
        state = Mutex(State(slots: SnapshotSlots(permits: permits)))
    }

    /// The slots held now, and the snapshots waiting for one (metrics).
    func usage() -> (inUse: Int, waiting: Int) {
        state.withLock { ($0.slots.inUse, $0.slots.waiting) }
    }

    /// Runs `body` holding a slot of `lane` (which it may leave for the suspects' one).
    func withSlot<T>(_ lane: SnapshotSlots.Lane, _ body: (SnapshotSlot) async throws -> T) async throws -> T {
        try await acquire(lane)
        let slot = SnapshotSlot(lane: lane, limiter: self)
        defer { release(slot.lane) }
        return try await body(slot)
    }

    /// Runs `body` holding a regular slot: short repository work (start-up bookkeeping, an
    /// error to record) that never waits for a remote.
    func withPermit<T>(_ body: () async throws -> T) async throws -> T {
        try await withSlot(.regular) { _ in try await body() }
    }

    fileprivate func moveToSuspects() -> Bool {
        let (move, next) = state.withLock { state -> (SnapshotSlots.Move, CheckedContinuation<Void, any Error>?) in
            let move = state.slots.moveToSuspects()
            guard case .moved(let id?) = move else { return (move, nil) }
            return (move, state.waiters.removeValue(forKey: id))
        }
        next?.resume()
        return move != .laneFull
    }

    private func acquire(_ lane: SnapshotSlots.Lane) async throws {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let granted = state.withLock { state -> Bool in
                    if state.slots.request(id, lane: lane) { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if granted {
                    continuation.resume()
                } else if Task.isCancelled {
                    // Cancelled before the waiter was queued: onCancel found nothing.
                    withdraw(id)?.resume(throwing: CancellationError())
                }
            }
        } onCancel: {
            withdraw(id)?.resume(throwing: CancellationError())
        }
    }

    private func withdraw(_ id: UInt64) -> CheckedContinuation<Void, any Error>? {
        state.withLock { state in
            state.slots.withdraw(id) ? state.waiters.removeValue(forKey: id) : nil
        }
    }

    private func release(_ lane: SnapshotSlots.Lane) {
        let next = state.withLock { state in
            state.slots.release(lane).flatMap { state.waiters.removeValue(forKey: $0) }
        }
        next?.resume()
    }
}

/// The slot a snapshot holds, lent by `SnapshotLimiter.withSlot` for the snapshot's duration.
final class SnapshotSlot: Sendable {
    private let current: Mutex<SnapshotSlots.Lane>
    private let limiter: SnapshotLimiter

    fileprivate init(lane: SnapshotSlots.Lane, limiter: SnapshotLimiter) {
        current = Mutex(lane)
        self.limiter = limiter
    }

    /// The lane it is in now.
    var lane: SnapshotSlots.Lane { current.withLock { $0 } }

    /// Leaves the regular lane for the suspects' one (its remote went silent); false when that
    /// lane is full, and the snapshot must be given up. True when already there.
    func moveToSuspects() -> Bool {
        current.withLock { lane in
            guard lane == .regular else { return true }
            guard limiter.moveToSuspects() else { return false }
            lane = .suspects
            return true
        }
    }

    /// A watch that moves this slot to the suspects' lane when the remote is silent for
    /// `limit`, or gives the snapshot up when that lane is full.
    func silenceWatch(limit: Duration) -> SilenceWatch {
        SilenceWatch(limit: limit) { [self] in moveToSuspects() }
    }

    /// The watch of a snapshot planned with the silence limit `limit` (nil: none): in a regular
    /// slot, a silent remote moves it out; in the suspects' lane the watch only measures what
    /// the remote needs (up to `timeout`).
    func silenceWatch(planned limit: Duration?, timeout: Duration) -> SilenceWatch? {
        limit.map { silenceWatch(limit: lane == .regular ? $0 : timeout) }
    }
}
