import Foundation

/// Runs the few libpq calls that may block (`PQconnectStartParams` and `PQconnectPoll`, which
/// resolve host names; `PQcancel`, blocking until libpq 17) on a thread of their own, never on
/// the cooperative pool, and awaits their result without blocking the caller's thread.
///
/// A fresh thread per call: these calls are rare (connects and cancels), and a fixed pool would
/// let one hung DNS lookup delay every other server's connect.
enum BlockingCall {
    static func run<Result: Sendable>(_ body: @escaping @Sendable () -> Result) async -> Result {
        await withCheckedContinuation { continuation in
            let thread = Thread {
                continuation.resume(returning: body())
            }
            thread.name = "powa-libpq-blocking"
            thread.stackSize = 512 * 1024
            thread.start()
        }
    }
}
