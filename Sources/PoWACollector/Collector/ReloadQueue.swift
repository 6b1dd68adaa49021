import Synchronization

/// Reloads, one at a time, whoever asks (SIGHUP, RELOAD, start-up): a reload never interleaves
/// with another, so the fleet's bookkeeping is never seen half-done. A request that arrives
/// while a reload runs is served by the next one, and every request waiting by then shares
/// that next run: they all asked for the state as it is now.
final class ReloadQueue: Sendable {
    private struct State {
        var running = false
        var waiting: [CheckedContinuation<Bool, Never>] = []
        /// The work of the next run: the latest request's.
        var next: (@Sendable () async -> Bool)?
    }

    private let state = Mutex(State())

    init() {}

    /// Waits for a run of `reload` (which does the work and says whether it succeeded) that
    /// starts after this call, and returns its outcome.
    func request(_ reload: @escaping @Sendable () async -> Bool) async -> Bool {
        await withCheckedContinuation { continuation in
            let start = state.withLock { state -> Bool in
                state.waiting.append(continuation)
                state.next = reload
                guard !state.running else { return false }
                state.running = true
                return true
            }
            // Not the caller's task: a reload, once begun, finishes even if its caller is
            // cancelled (a worker fleet reconciled halfway would be the very bug this prevents).
            if start { Task { await self.drain() } }
        }
    }

    private func drain() async {
        while true {
            let (batch, reload) = state.withLock { state in
                defer {
                    state.waiting = []
                    state.next = nil
                }
                if state.waiting.isEmpty { state.running = false }
                return (state.waiting, state.next)
            }
            guard !batch.isEmpty, let reload else { return }
            let outcome = await reload()
            for continuation in batch { continuation.resume(returning: outcome) }
        }
    }
}
