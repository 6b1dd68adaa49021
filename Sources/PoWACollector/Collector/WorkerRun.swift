import Synchronization

/// One worker's run, a child of the fleet's task group (`WorkerFleet.run`), as the fleet holds
/// it: `stop()` cancels the worker (a snapshot in flight is rolled back), `stopped()` waits
/// until it has ended, as a `Task`'s `cancel()` and `value` would for a task of its own.
final class WorkerRun: Sendable {
    private struct State {
        var stopRequested = false
        /// The worker returned on its own.
        var returned = false
        /// The owner's wait for `stop()` or the worker's return.
        var stopWaiter: CheckedContinuation<Void, Never>?
        var ended = false
        var endWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    init() {}

    /// Runs `worker` until it ends or `stop()` is called (then cancelled, and waited for): the
    /// worker in a child task, the calling task (the fleet's child) waiting for either, with no
    /// task of its own for that (a thousand workers: a task fewer each).
    func run(_ worker: @escaping @Sendable () async -> Void) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await worker()
                self.workerReturned()
            }
            await stopRequestedOrReturned()
            group.cancelAll()
        }
        end()
    }

    /// Asks the worker to stop (at once if it has not started).
    func stop() {
        let waiter = state.withLock { state in
            state.stopRequested = true
            defer { state.stopWaiter = nil }
            return state.stopWaiter
        }
        waiter?.resume()
    }

    /// Returns once the worker has ended (or the fleet ended without starting it).
    func stopped() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ended = state.withLock { state in
                if !state.ended { state.endWaiters.append(continuation) }
                return state.ended
            }
            if ended { continuation.resume() }
        }
    }

    /// The worker ended, or will never run: whoever waits for it goes on.
    func end() {
        let waiters = state.withLock { state in
            state.ended = true
            defer { state.endWaiters = [] }
            return state.endWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    private func workerReturned() {
        let waiter = state.withLock { state in
            state.returned = true
            return state.stopWaiter.take()
        }
        waiter?.resume()
    }

    /// Returns once `stop()` was called or the worker returned, or at once when the task is
    /// cancelled.
    private func stopRequestedOrReturned() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let over = state.withLock { state in
                    let over = state.stopRequested || state.returned
                    if !over { state.stopWaiter = continuation }
                    return over
                }
                if over { continuation.resume() }
            }
        } onCancel: {
            stop()
        }
    }
}
