import Synchronization

/// Reloads, one at a time, whoever asks (SIGHUP, RELOAD, start-up): a reload never interleaves
/// with another, so the fleet's bookkeeping is never seen half-done. A request that arrives
/// while a reload runs is served by the next one, and every request waiting by then shares
/// that next run: they all asked for the state as it is now.
///
/// A requester whose task is cancelled (shutdown) stops waiting at once (`.interrupted`); the
/// run itself, once begun, still finishes on its own (a fleet reconciled halfway would be the
/// very bug this type prevents), and the fleet refuses to start workers after its shutdown.
final class ReloadQueue: Sendable {
    private typealias Waiter = CheckedContinuation<ReloadOutcome, Never>

    private struct State {
        var running = false
        var nextID: UInt64 = 0
        /// Requests for the next run.
        var waiting: [UInt64: Waiter] = [:]
        /// Requests served by the run in progress.
        var served: [UInt64: Waiter] = [:]
        /// The work of the next run: the latest request's.
        var next: (@Sendable () async -> ReloadOutcome)?
    }

    private let state = Mutex(State())

    init() {}

    /// Waits for a run of `reload` (which does the work and says how it went) that starts
    /// after this call, and returns its outcome; `.interrupted` if the caller is cancelled first.
    ///
    /// `replacesPending: false` is for work that a pending request's does too (the workers
    /// following the fleet's assignment, which every reload ends with): it runs only when no
    /// other request waits.
    func request(
        replacesPending: Bool = true, _ reload: @escaping @Sendable () async -> ReloadOutcome
    ) async -> ReloadOutcome {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: Waiter) in
                let start = state.withLock { state -> Bool in
                    state.waiting[id] = continuation
                    if replacesPending || state.next == nil { state.next = reload }
                    guard !state.running else { return false }
                    state.running = true
                    return true
                }
                if start { Task { await self.drain() } }
                // Cancelled before the continuation was stored: the handler found nothing.
                if Task.isCancelled { resume(id, with: .interrupted) }
            }
        } onCancel: {
            resume(id, with: .interrupted)
        }
    }

    /// Resumes a request still waiting for, or served by, a run (at most once).
    private func resume(_ id: UInt64, with outcome: ReloadOutcome) {
        let waiter = state.withLock { state in
            state.waiting.removeValue(forKey: id) ?? state.served.removeValue(forKey: id)
        }
        waiter?.resume(returning: outcome)
    }

    /// Not the callers' task: runs until no request waits.
    private func drain() async {
        while true {
            let reload = state.withLock { state -> (@Sendable () async -> ReloadOutcome)? in
                defer {
                    state.served = state.waiting
                    state.waiting = [:]
                    state.next = nil
                }
                if state.waiting.isEmpty { state.running = false }
                return state.waiting.isEmpty ? nil : state.next
            }
            guard let reload else { return }
            let outcome = await reload()
            let served = state.withLock { state in
                defer { state.served = [:] }
                return state.served.values
            }
            for waiter in served { waiter.resume(returning: outcome) }
        }
    }
}
