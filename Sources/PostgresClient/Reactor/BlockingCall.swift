import Foundation
import Synchronization

/// Runs the few libpq calls that may block (`PQconnectStartParams` and `PQconnectPoll`, which
/// resolve host names; `PQcancel`, blocking until libpq 17) on a thread of their own, never on
/// the cooperative pool, and awaits their result without blocking the caller's thread.
///
/// A fresh thread per call: these calls are rare (connects and cancels), and a fixed pool would
/// let one hung DNS lookup delay every other server's connect.
enum BlockingCall {
    /// How a call with a deadline ended for its caller.
    enum Outcome<Result: Sendable>: Sendable {
        case finished(Result)
        /// The deadline passed first; the call goes on without its caller.
        case timedOut
        /// The waiting task was cancelled first; the call goes on without its caller.
        case cancelled
        /// Not started: its `Slots` stayed all taken (abandoned calls included) until the
        /// deadline.
        case overloaded
    }

    static func run<Result: Sendable>(_ body: @escaping @Sendable () -> Result) async -> Result {
        await withCheckedContinuation { continuation in
            start { continuation.resume(returning: body()) }
        }
    }

    /// Runs `body` on its own thread, once one of `slots` is free, and waits for it until
    /// `deadline` or the task's cancellation, whichever comes first: a lookup of a host name that hangs (a DNS server
    /// that never answers) cannot hold the caller past its deadline, nor past a SIGTERM.
    ///
    /// A thread cannot be stopped, so a call its caller stopped waiting for runs to its end;
    /// `abandoned` then receives its result, on that thread, to release what it owns (the
    /// caller, having given up, must no longer touch what it handed to `body`).
    static func run<Result: Sendable>(
        until deadline: ContinuousClock.Instant,
        slots: Slots = .shared,
        _ body: @escaping @Sendable () -> Result,
        abandoned: @escaping @Sendable (Result) -> Void
    ) async -> Outcome<Result> {
        guard await slots.take(until: deadline) else { return Task.isCancelled ? .cancelled : .overloaded }
        let race = Race<Result>()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                guard race.begin(continuation) else {
                    slots.give()
                    return
                }
                start {
                    let result = body()
                    slots.give()
                    if !race.end(.finished(result)) { abandoned(result) }
                }
                race.setTimer(
                    Task {
                        try? await Task.sleep(until: deadline, clock: .continuous)
                        race.end(.timedOut)
                    })
            }
        } onCancel: {
            race.end(.cancelled)
        }
    }

    private static func start(_ body: @escaping @Sendable () -> Void) {
        let thread = Thread(block: body)
        thread.name = "powa-libpq-blocking"
        // (libpq's TLS and GSSAPI steps run here too.)
        thread.stackSize = 1024 * 1024
        thread.start()
    }

    /// The first of the call, the deadline and the cancellation to end the wait wins; the
    /// others find it over.
    private final class Race<Result: Sendable>: Sendable {
        private enum State {
            case notStarted
            case waiting(CheckedContinuation<Outcome<Result>, Never>)
            case over
        }
        private let state = Mutex(State.notStarted)
        /// The deadline's timer, stopped when the wait ends otherwise.
        private let timer = Mutex<Task<Void, Never>?>(nil)

        func setTimer(_ task: Task<Void, Never>) {
            timer.withLock { $0 = task }
            let over = state.withLock { state in
                if case .over = state { return true }
                return false
            }
            if over { task.cancel() }
        }

        /// Installs the waiter; false (and the waiter resumed) when the task was already
        /// cancelled, in which case the call must not start.
        func begin(_ continuation: CheckedContinuation<Outcome<Result>, Never>) -> Bool {
            let over = state.withLock { state -> Bool in
                if case .over = state { return true }
                state = .waiting(continuation)
                return false
            }
            if over { continuation.resume(returning: .cancelled) }
            return !over
        }

        /// Ends the wait with `outcome` if it is not over yet; returns whether it did.
        @discardableResult
        func end(_ outcome: Outcome<Result>) -> Bool {
            let waiter = state.withLock { state -> CheckedContinuation<Outcome<Result>, Never>?? in
                switch state {
                case .notStarted:
                    state = .over
                    return .some(nil)
                case .waiting(let continuation):
                    state = .over
                    return continuation
                case .over:
                    return nil
                }
            }
            guard let waiter else { return false }
            timer.withLock { $0 }?.cancel()
            waiter?.resume(returning: outcome)
            return true
        }
    }
}
