import Synchronization

/// What the rest of the daemon asks of a running worker, without waiting for it: take a
/// snapshot now, re-check versions. The worker sleeps on its mailbox until the next snapshot
/// is due or a request arrives; no polling.
final class WorkerMailbox: Sendable {
    /// A request to a worker.
    enum Request: Hashable, Sendable {
        case forceSnapshot
        case recheckVersions
        /// Stop once the snapshot in progress, if any, has ended (its server went to another
        /// member of the fleet).
        case retire
    }

    private struct State {
        var pending: Set<Request> = []
        var waiter: CheckedContinuation<Void, Never>?
        /// The current wait's time has come.
        var timeUp = false
    }

    private let state = Mutex(State())

    /// Leaves a request and wakes the worker.
    func post(_ request: Request) {
        let waiter = state.withLock { state in
            state.pending.insert(request)
            return state.waiter.take()
        }
        waiter?.resume()
    }

    /// Whether a request is waiting (without taking it).
    func isPending(_ request: Request) -> Bool {
        state.withLock { $0.pending.contains(request) }
    }

    /// Takes the pending requests.
    func take() -> Set<Request> {
        state.withLock { state in
            defer { state.pending = [] }
            return state.pending
        }
    }

    /// Waits until `deadline`, a request arrives, or the task is cancelled. One child task, the
    /// timer; the caller's own task waits for the request (a thousand idle workers: a task
    /// fewer each).
    func wait(until deadline: ContinuousClock.Instant) async {
        state.withLock { $0.timeUp = false }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                guard (try? await Task.sleep(until: deadline, clock: .continuous)) != nil else { return }
                self.state.withLock { state in
                    state.timeUp = true
                    return state.waiter.take()
                }?.resume()
            }
            await waitForRequest()
            group.cancelAll()
        }
    }

    private func waitForRequest() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let ready = state.withLock { state -> Bool in
                    if !state.pending.isEmpty || state.timeUp { return true }
                    state.waiter = continuation
                    return false
                }
                if ready {
                    continuation.resume()
                } else if Task.isCancelled {
                    // Cancelled before the continuation was stored: onCancel found nothing.
                    state.withLock { $0.waiter.take() }?.resume()
                }
            }
        } onCancel: {
            state.withLock { $0.waiter.take() }?.resume()
        }
    }
}
