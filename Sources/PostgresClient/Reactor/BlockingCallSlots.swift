import Synchronization

extension BlockingCall {
    /// How many calls with a deadline may run at once. Abandoned calls keep their thread until
    /// they end (a dead DNS server: the resolver's own timeout, up to 30 s), so a thousand
    /// servers retrying against it would otherwise pile up thousands of threads.
    ///
    /// A call that finds them all taken waits for one, first come first served, until its
    /// deadline: a thousand workers connecting at start-up take turns (each step takes
    /// milliseconds) instead of failing, while against a dead DNS server they still give up
    /// at their connect timeout.
    final class Slots: Sendable {
        let maximum: Int

        private struct Waiter {
            let id: UInt64
            let deadline: ContinuousClock.Instant
            let continuation: CheckedContinuation<Bool, Never>
            /// Withdraws the waiter at its deadline; stopped when it gets a slot.
            var timer: Task<Void, Never>?
        }

        private struct State {
            var running = 0
            var waiters: [Waiter] = []
            var nextID: UInt64 = 0
        }

        private let state = Mutex(State())

        init(maximum: Int) { self.maximum = maximum }

        /// The process's: 64 threads.
        static let shared = Slots(maximum: 64)

        /// Takes a slot, waiting for one until `deadline` or the task's cancellation; false
        /// when none came in time.
        func take(until deadline: ContinuousClock.Instant) async -> Bool {
            let id = state.withLock { state -> UInt64? in
                if takeFree(&state) { return nil }
                state.nextID += 1
                return state.nextID
            }
            guard let id else { return true }
            return await withTaskCancellationHandler {
                await withCheckedContinuation { continuation in
                    // Checked again with the waiter at hand: a slot given back since the first
                    // look went to nobody.
                    let granted = state.withLock { state -> Bool in
                        if takeFree(&state) { return true }
                        state.waiters.append(Waiter(id: id, deadline: deadline, continuation: continuation))
                        return false
                    }
                    if granted {
                        continuation.resume(returning: true)
                        return
                    }
                    let timer = Task {
                        try? await Task.sleep(until: deadline, clock: .continuous)
                        self.withdraw(id)
                    }
                    let waiting = state.withLock { state -> Bool in
                        guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return false }
                        state.waiters[index].timer = timer
                        return true
                    }
                    if !waiting { timer.cancel() }
                    if Task.isCancelled { withdraw(id) }
                }
            } onCancel: {
                withdraw(id)
            }
        }

        /// Takes a free slot, unless none is or callers already wait for one (first come,
        /// first served).
        private func takeFree(_ state: inout State) -> Bool {
            guard state.running < maximum, state.waiters.isEmpty else { return false }
            state.running += 1
            return true
        }

        /// Gives a slot back: to the first waiter whose deadline has not passed, if any (one
        /// whose timer has not run yet is refused now, rather than given a thread its caller
        /// would abandon at once).
        func give() {
            let now = ContinuousClock.now
            let (next, expired) = state.withLock { state -> (Waiter?, [Waiter]) in
                var expired: [Waiter] = []
                while !state.waiters.isEmpty {
                    let waiter = state.waiters.removeFirst()
                    if waiter.deadline > now { return (waiter, expired) }
                    expired.append(waiter)
                }
                state.running -= 1
                return (nil, expired)
            }
            for waiter in expired {
                waiter.timer?.cancel()
                waiter.continuation.resume(returning: false)
            }
            guard let next else { return }
            next.timer?.cancel()
            next.continuation.resume(returning: true)
        }

        /// Calls running and callers waiting, for tests.
        var load: (running: Int, waiting: Int) {
            state.withLock { ($0.running, $0.waiters.count) }
        }

        /// Ends a wait without a slot (its deadline passed, or its task was cancelled), unless
        /// it is already over.
        private func withdraw(_ id: UInt64) {
            let waiter = state.withLock { state -> Waiter? in
                guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return state.waiters.remove(at: index)
            }
            guard let waiter else { return }
            waiter.timer?.cancel()
            waiter.continuation.resume(returning: false)
        }
    }
}
