import Synchronization

/// Bounds how many snapshots write into the repository at once (a counting semaphore whose
/// waiters are served in order and can be cancelled).
///
/// Servers whose last snapshot ran out of time (a hung source, a blackholed remote) are
/// *suspect*: together they may hold at most half of the slots, so that a few hung remotes,
/// each holding a slot until the snapshot timeout, cannot starve the healthy servers.
final class SnapshotLimiter: Sendable {
    private struct Waiter {
        let id: UInt64
        let suspect: Bool
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var available: Int
        var suspectsInUse = 0
        var waiters: [Waiter] = []
        var nextID: UInt64 = 0

        /// Takes a slot when one is free (and, for a suspect, when its lane has room).
        mutating func grant(suspect: Bool, limit: Int) -> Bool {
            guard available > 0, !suspect || suspectsInUse < limit else { return false }
            available -= 1
            if suspect { suspectsInUse += 1 }
            return true
        }
    }

    private let state: Mutex<State>
    /// The slots suspect servers may hold together.
    let suspectPermits: Int
    let permits: Int

    init(permits: Int) {
        let permits = max(1, permits)
        self.permits = permits
        state = Mutex(State(available: permits))
        suspectPermits = max(1, permits / 2)
    }

    /// The slots held now, and the snapshots waiting for one (metrics).
    func usage() -> (inUse: Int, waiting: Int) {
        state.withLock { (permits - $0.available, $0.waiters.count) }
    }

    /// Runs `body` holding a permit; `suspect`: the server's last snapshot timed out.
    func withPermit<T>(suspect: Bool = false, _ body: () async throws -> T) async throws -> T {
        try await acquire(suspect: suspect)
        defer { release(suspect: suspect) }
        return try await body()
    }

    private func acquire(suspect: Bool) async throws {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let granted = state.withLock { state -> Bool in
                    // Waiters left while a slot is free are suspects held back by their lane.
                    if state.grant(suspect: suspect, limit: suspectPermits) { return true }
                    state.waiters.append(Waiter(id: id, suspect: suspect, continuation: continuation))
                    return false
                }
                if granted {
                    continuation.resume()
                } else if Task.isCancelled {
                    // Cancelled before the waiter was queued: onCancel found nothing.
                    removeWaiter(id)?.resume(throwing: CancellationError())
                }
            }
        } onCancel: {
            removeWaiter(id)?.resume(throwing: CancellationError())
        }
    }

    private func removeWaiter(_ id: UInt64) -> CheckedContinuation<Void, any Error>? {
        state.withLock { state in
            state.waiters.firstIndex { $0.id == id }.map { state.waiters.remove(at: $0).continuation }
        }
    }

    private func release(suspect: Bool) {
        let next = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
            state.available += 1
            if suspect { state.suspectsInUse -= 1 }
            // The first waiters that may take a slot now, in order: a suspect held back by its
            // lane's limit does not hold back the healthy servers behind it.
            var granted: [CheckedContinuation<Void, any Error>] = []
            var index = 0
            while index < state.waiters.count, state.available > 0 {
                if state.grant(suspect: state.waiters[index].suspect, limit: suspectPermits) {
                    granted.append(state.waiters.remove(at: index).continuation)
                } else {
                    index += 1
                }
            }
            return granted
        }
        for continuation in next { continuation.resume() }
    }
}
