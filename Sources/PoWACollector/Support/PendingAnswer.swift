import Synchronization

/// An answer one task awaits from another: given once (later gifts are ignored), and given
/// nil at once when the awaiting task is cancelled, so that an asker never outlives its
/// cancellation waiting for a loop that may no longer run.
final class PendingAnswer<Value: Sendable>: Sendable {
    private enum State {
        case waiting(CheckedContinuation<Value?, Never>?)
        case given(Value?)
    }

    private let state = Mutex(State.waiting(nil))

    init() {}

    /// Gives the answer (nil: none will come), unless one was already given.
    func give(_ value: Value?) {
        let waiter = state.withLock { state -> CheckedContinuation<Value?, Never>? in
            guard case .waiting(let waiter) = state else { return nil }
            state = .given(value)
            return waiter
        }
        waiter?.resume(returning: value)
    }

    /// The answer; nil if none came or the caller was cancelled first. One caller.
    func value() async -> Value? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Value?, Never>) in
                let given = state.withLock { state -> Value?? in
                    if case .given(let value) = state { return .some(value) }
                    state = .waiting(continuation)
                    return nil
                }
                if let given { continuation.resume(returning: given) }
            }
        } onCancel: {
            give(nil)
        }
    }
}
