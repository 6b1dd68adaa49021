import CLibPQ
import Synchronization

/// A cancel request for a running statement, sent with `PQcancel` on a thread of its own
/// (it blocks until libpq 17, and may hang on a dead network).
///
/// The session that asked must not run another statement while the request may still reach
/// the server, or the cancel could stop that statement instead: `finished(before:)` tells
/// whether the request is over.
final class CancelRequest: Sendable {
    private struct State {
        var done = false
        /// The waiter gave up: a wait that starts now returns at once.
        var givenUp = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    /// Sends the request at once; takes ownership of `cancel` and frees it.
    init(_ cancel: OpaquePointer) {
        let transfer = UnsafeTransfer(cancel)
        Task.detached { [self] in
            await BlockingCall.run {
                var buffer = [CChar](repeating: 0, count: 256)
                _ = PQcancel(transfer.value, &buffer, Int32(buffer.count))
                PQfreeCancel(transfer.value)
            }
            state.withLock { state in
                state.done = true
                return state.waiter.take()
            }?.resume()
        }
    }

    /// Waits (at most until `deadline`, and not at all in a cancelled task) for the request to
    /// be over; returns whether it is.
    func finished(before deadline: ContinuousClock.Instant) async -> Bool {
        if state.withLock({ $0.done }) { return true }
        guard !Task.isCancelled else { return false }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(until: deadline, clock: .continuous) }
            group.addTask {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let done = self.state.withLock { state -> Bool in
                        if state.done || state.givenUp { return true }
                        state.waiter = continuation
                        return false
                    }
                    if done { continuation.resume() }
                }
            }
            await group.next()
            group.cancelAll()
            // The request's own wake-up, if the timer won: nothing else would resume it.
            self.state.withLock { state in
                state.givenUp = true
                return state.waiter.take()
            }?.resume()
        }
        return state.withLock { $0.done }
    }
}
