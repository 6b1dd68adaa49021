import Foundation
import Glibc
import Synchronization
import TestWaiting
import Testing

@testable import PostgresClient

/// The reactor's waits and deadlines, on socket pairs (no network): each test has a reactor of
/// its own, so that the state of its timer is the test's.
@Suite("Socket reactor", .timeLimit(.minutes(1)))
struct SocketReactorTests {
    /// Two connected sockets: waits are on `waited`, data is written to `peer`.
    final class SocketPair: Sendable {
        let waited: Int32
        let peer: Int32

        init() throws {
            var fds: [Int32] = [0, 0]
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else {
                throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
            }
            (waited, peer) = (fds[0], fds[1])
        }

        func send() { _ = withUnsafeBytes(of: UInt8(1)) { Glibc.write(peer, $0.baseAddress, 1) } }

        deinit {
            close(waited)
            close(peer)
        }
    }

    /// Waits on `fd` with nothing to read and a deadline `after` from now: the wait must time
    /// out at the deadline, not before, and well within `within`.
    static func expectTimeout(
        _ reactor: SocketReactor, fd: Int32, after: Duration, within: Duration = .seconds(5)
    ) async {
        let started = ContinuousClock.now
        let outcome = await reactor.wait(fd: fd, for: .read, deadline: started + after)
        let elapsed = ContinuousClock.now - started
        #expect(outcome == .timedOut)
        #expect(elapsed >= after)
        #expect(elapsed < within)
    }

    @Test("a wait with nothing to read ends at its deadline, neither before nor long after")
    func timesOut() async throws {
        let reactor = SocketReactor()
        let pair = try SocketPair()
        await Self.expectTimeout(reactor, fd: pair.waited, after: .milliseconds(150), within: .seconds(2))
    }

    @Test("data ends a wait at once, long before its deadline")
    func ready() async throws {
        let reactor = SocketReactor()
        let pair = try SocketPair()
        pair.send()
        let started = ContinuousClock.now
        let outcome = await reactor.wait(fd: pair.waited, for: .read, deadline: started + .seconds(30))
        #expect(outcome == .ready)
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    @Test("an earlier deadline armed after a later one fires first; the later wait goes on until its data")
    func earlierDeadlineArmedLater() async throws {
        let reactor = SocketReactor()
        let slow = try SocketPair()
        let fast = try SocketPair()
        let slowOutcome = Mutex<SocketWaitOutcome?>(nil)
        let slowWait = Task {
            let outcome = await reactor.wait(fd: slow.waited, for: .read, deadline: .now + .seconds(20))
            slowOutcome.withLock { $0 = outcome }
        }
        // The later deadline is armed first (the task above runs while this one sleeps).
        try #require(
            try await eventually(timeout: .seconds(5), interval: .milliseconds(5)) { reactor.isWaiting(fd: slow.waited) })
        await Self.expectTimeout(reactor, fd: fast.waited, after: .milliseconds(150))
        #expect(slowOutcome.withLock { $0 } == nil)
        slow.send()
        await slowWait.value
        #expect(slowOutcome.withLock { $0 } == .ready)
    }

    @Test("the timer of a wait that ended early does not cut a later wait short")
    func staleTimer() async throws {
        let reactor = SocketReactor()
        let pair = try SocketPair()
        pair.send()
        // Arms the timer for 100 ms, then ends at once with the data.
        #expect(await reactor.wait(fd: pair.waited, for: .read, deadline: .now + .milliseconds(100)) == .ready)
        var byte: UInt8 = 0
        _ = Glibc.read(pair.waited, &byte, 1)
        await Self.expectTimeout(reactor, fd: pair.waited, after: .milliseconds(400))
    }

    @Test("a wait without a deadline ends with its data, and a cancelled one at once")
    func noDeadlineAndCancellation() async throws {
        let reactor = SocketReactor()
        let pair = try SocketPair()
        let waiting = Task { await reactor.wait(fd: pair.waited, for: .read, deadline: nil) }
        try #require(
            try await eventually(timeout: .seconds(5), interval: .milliseconds(5)) { reactor.isWaiting(fd: pair.waited) })
        pair.send()
        #expect(await waiting.value == .ready)
        var byte: UInt8 = 0
        _ = Glibc.read(pair.waited, &byte, 1)
        let cancelled = Task { await reactor.wait(fd: pair.waited, for: .read, deadline: nil) }
        try #require(
            try await eventually(timeout: .seconds(5), interval: .milliseconds(5)) { reactor.isWaiting(fd: pair.waited) })
        cancelled.cancel()
        #expect(await cancelled.value == .cancelled)
    }

    /// The name of the calling thread, as the kernel has it (the reactor's is `powa-reactor`).
    static func threadName() -> String { Thread.current.name ?? "" }

    @Test("a task that prefers the reactor runs on its thread, and comes back there after a socket wait and after a sleep")
    func executor() async throws {
        let reactor = SocketReactor()
        let pair = try SocketPair()
        let names = try await withTaskExecutorPreference(reactor) {
            var names = [Self.threadName()]
            pair.send()
            // Resumed by the loop itself: no wake-up needed.
            #expect(await reactor.wait(fd: pair.waited, for: .read, deadline: .now + .seconds(10)) == .ready)
            names.append(Self.threadName())
            // Resumed from a timer's thread while the loop sleeps: the job must wake it.
            try await Task.sleep(for: .milliseconds(20))
            names.append(Self.threadName())
            // A child task inherits the preference.
            async let child = Self.threadName()
            names.append(await child)
            return names
        }
        #expect(names == Array(repeating: "powa-reactor", count: 4))
        #expect(Self.threadName() != "powa-reactor")
    }
}
