import CEpoll
import Foundation
import Synchronization

/// What a wait for socket readiness ended with.
enum SocketWaitOutcome: Sendable, Equatable {
    /// The socket is ready for at least one of the events asked for.
    case ready
    /// The deadline passed first.
    case timedOut
    /// The waiting task was cancelled.
    case cancelled
}

/// The events a connection waits for on its socket.
struct SocketEvents: OptionSet, Sendable {
    let rawValue: UInt32
    static let read = SocketEvents(rawValue: EPOLLIN.rawValue)
    static let write = SocketEvents(rawValue: EPOLLOUT.rawValue)
}

/// One thread that waits on epoll for every libpq socket of the process, so that no task ever
/// blocks a thread of the cooperative pool while a server is slow to answer.
///
/// Each wait arms its descriptor with `EPOLLONESHOT`: a readiness event wakes exactly one
/// waiter, once. libpq closes and reopens sockets itself and the kernel reuses descriptor
/// numbers at once, so a wait re-arms with `EPOLL_CTL_MOD` and falls back to `EPOLL_CTL_ADD`
/// when the descriptor is new to epoll. Each event carries the descriptor and the id of the
/// wait that armed it (as swift-nio's selector does), so an event left over from an earlier
/// wait on a reused descriptor number wakes nobody. Deadlines are kept in a heap: a wake-up
/// costs the events it delivers, never a scan of every waiter. A spurious wake-up is harmless
/// anyway: every caller re-checks libpq's state and waits again.
///
/// The deadlines' clock is a timerfd in the same epoll set, armed by whoever sets an earlier
/// deadline than the one it holds. The loop itself sleeps without a timeout: a wait never has
/// to wake it to shorten its sleep, which would cost a second pair of context switches for
/// every round trip of a snapshot (almost every wait brings a deadline, and after a wait ends
/// its own was often the earliest). The timer is not shortened when waits end early: it then
/// fires at a deadline nobody waits for any more, and the loop arms it for the earliest left.
///
/// The reactor is also a task executor (`PostgresConnection.socketExecutor`). A task that
/// prefers it (a worker, which does little but wait on its sessions) runs on this thread:
/// readiness resumes it here, at once, instead of handing it to a thread of the cooperative
/// pool that must be woken, run it, and sleep again: two context switches and two futex calls
/// per round trip and per chunk of a COPY, most of the collector's CPU. The loop runs the
/// jobs queued, then looks at the sockets (at once if more jobs came meanwhile), so neither
/// starves the other; a job enqueued from another thread wakes a sleeping loop (an eventfd).
final class SocketReactor: Sendable {
    /// The reactor of the process.
    static let shared = SocketReactor()

    private struct Waiter {
        let id: UInt32
        let continuation: UnsafeContinuation<SocketWaitOutcome, Never>
    }

    private struct State {
        var nextID: UInt32 = 0
        var waiters: [Int32: Waiter] = [:]
        /// The deadlines of the waiters that have one, by descriptor.
        var deadlines = DeadlineHeap<Int32>()
        /// When the timer fires (nil: disarmed).
        var timerDeadline: ContinuousClock.Instant?
        /// The jobs of the tasks that prefer this executor, in order.
        var jobs: [UnownedJob] = []
        /// The loop sleeps in epoll_wait with no job queued: an enqueue must wake it.
        var sleeping = false

        /// Takes the waiter of `fd` out, with its deadline.
        mutating func removeWaiter(_ fd: Int32) -> Waiter? {
            deadlines.remove(fd)
            return waiters.removeValue(forKey: fd)
        }
    }

    /// What an event's `data.u64` holds: the wait's id in the high half, the descriptor in
    /// the low half.
    private static func eventData(fd: Int32, id: UInt32) -> UInt64 {
        UInt64(id) << 32 | UInt64(UInt32(bitPattern: fd))
    }

    private let epollFD: Int32
    private let timerFD: Int32
    private let wakeFD: Int32
    private let state = Mutex(State())

    /// A reactor with its own thread. The process has one (`shared`); tests make their own.
    init() {
        epollFD = epoll_create1(Int32(EPOLL_CLOEXEC))
        timerFD = timerfd_create(CLOCK_BOOTTIME, Int32(TFD_CLOEXEC | TFD_NONBLOCK))
        wakeFD = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        precondition(epollFD >= 0 && timerFD >= 0 && wakeFD >= 0, "epoll, timerfd or eventfd unavailable")
        for fd in [timerFD, wakeFD] {
            var event = epoll_event()
            event.events = EPOLLIN.rawValue
            event.data.u64 = Self.eventData(fd: fd, id: 0)
            precondition(epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) == 0)
        }
        let thread = Thread { [self] in self.loop() }
        thread.name = "powa-socket-reactor"
        thread.start()
    }

    /// Waits until `fd` is ready for `events`, the deadline passes, or (when `cancellable`) the
    /// task is cancelled. A non-cancellable wait is what cleanup after a cancellation uses.
    func wait(
        fd: Int32,
        for events: SocketEvents,
        deadline: ContinuousClock.Instant?,
        cancellable: Bool = true
    ) async -> SocketWaitOutcome {
        if let deadline, deadline <= .now { return .timedOut }
        let id = state.withLock { state in
            state.nextID &+= 1
            return state.nextID
        }
        guard cancellable else {
            return await withUnsafeContinuation { continuation in
                arm(fd: fd, events: events, id: id, deadline: deadline, continuation: continuation)
            }
        }
        return await withTaskCancellationHandler {
            await withUnsafeContinuation { continuation in
                arm(fd: fd, events: events, id: id, deadline: deadline, continuation: continuation)
                if Task.isCancelled { finish(fd: fd, id: id, with: .cancelled) }
            }
        } onCancel: {
            finish(fd: fd, id: id, with: .cancelled)
        }
    }

    private func arm(
        fd: Int32,
        events: SocketEvents,
        id: UInt32,
        deadline: ContinuousClock.Instant?,
        continuation: UnsafeContinuation<SocketWaitOutcome, Never>
    ) {
        let previous = state.withLock { state in
            let previous = state.removeWaiter(fd)
            state.waiters[fd] = Waiter(id: id, continuation: continuation)
            if let deadline {
                state.deadlines.set(fd, deadline: deadline)
                // Under the lock: two waits arming at once must leave the earlier deadline.
                if state.timerDeadline.map({ deadline < $0 }) ?? true { setTimer(deadline, in: &state) }
            }
            return previous
        }
        // One owner per connection means one waiter per descriptor; a leftover one can only
        // belong to a closed connection whose number was reused.
        previous?.continuation.resume(returning: .ready)

        var event = epoll_event()
        event.events = events.rawValue | EPOLLONESHOT.rawValue | EPOLLRDHUP.rawValue
        event.data.u64 = Self.eventData(fd: fd, id: id)
        if epoll_ctl(epollFD, EPOLL_CTL_MOD, fd, &event) != 0 {
            if errno != ENOENT || epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) != 0 {
                // Not a pollable descriptor (closed under us): let libpq report the failure.
                finish(fd: fd, id: id, with: .ready)
                return
            }
        }
    }

    /// Ends the wait `id` on `fd`, if it is still pending.
    private func finish(fd: Int32, id: UInt32, with outcome: SocketWaitOutcome) {
        let waiter = state.withLock { state -> Waiter? in
            guard state.waiters[fd]?.id == id else { return nil }
            return state.removeWaiter(fd)
        }
        guard let waiter else { return }
        if outcome != .ready {
            // Out of epoll, not merely disarmed: the kernel keeps reporting EPOLLHUP/EPOLLERR
            // of a descriptor left in with no events, and a peer hanging up on an idle
            // connection would then wake the loop at every turn. The next wait adds it back.
            var event = epoll_event()
            _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, &event)  // the fd may be gone
        }
        waiter.continuation.resume(returning: outcome)
    }

    /// Whether a wait on `fd` is pending (for tests).
    func isWaiting(fd: Int32) -> Bool { state.withLock { $0.waiters[fd] != nil } }

    /// Arms the timer to fire at `deadline` (at once if it is past).
    private func setTimer(_ deadline: ContinuousClock.Instant, in state: inout State) {
        state.timerDeadline = deadline
        let remaining = max(deadline - .now, .nanoseconds(1))  // zero would disarm it
        let (seconds, attoseconds) = remaining.components
        var value = itimerspec()
        value.it_value.tv_sec = Int(seconds)
        value.it_value.tv_nsec = Int(attoseconds / 1_000_000_000)
        precondition(timerfd_settime(timerFD, 0, &value, nil) == 0, "timerfd_settime failed: errno \(errno)")
    }

    private func loop() {
        // As `top -H` and /proc show it (Foundation's Thread.name does not reach the kernel).
        cepoll_name_thread("powa-reactor")
        let capacity = 256
        var events = [epoll_event](repeating: epoll_event(), count: capacity)
        let executor = asUnownedTaskExecutor()
        var jobs: [UnownedJob] = []
        while true {
            // Swapped with the queue, each keeping its storage: no copy, no allocation.
            state.withLock { swap(&jobs, &$0.jobs) }
            for job in jobs { job.runSynchronously(on: executor) }
            jobs.removeAll(keepingCapacity: true)
            // Sleep only with no job queued; else just look at the sockets.
            let timeout: Int32 = state.withLock { state in
                state.sleeping = state.jobs.isEmpty
                return state.sleeping ? -1 : 0
            }
            let count = epoll_wait(epollFD, &events, Int32(capacity), timeout)
            if count < 0 {
                if errno == EINTR {
                    state.withLock { $0.sleeping = false }
                    continue
                }
                fatalError("epoll_wait failed: errno \(errno)")
            }
            var ready: [UnsafeContinuation<SocketWaitOutcome, Never>] = []
            var timerFired = false
            var woken = false
            state.withLock { state in
                state.sleeping = false
                for index in 0..<Int(count) {
                    let data = events[index].data.u64
                    let fd = Int32(bitPattern: UInt32(truncatingIfNeeded: data))
                    let id = UInt32(truncatingIfNeeded: data >> 32)
                    if fd == wakeFD {
                        woken = true
                    } else if fd == timerFD {
                        timerFired = true
                    } else if state.waiters[fd]?.id == id, let waiter = state.removeWaiter(fd) {
                        ready.append(waiter.continuation)
                    }
                }
            }
            if woken {
                var counter: UInt64 = 0
                _ = withUnsafeMutableBytes(of: &counter) { Glibc.read(wakeFD, $0.baseAddress, 8) }
            }
            for continuation in ready { continuation.resume(returning: .ready) }
            if timerFired {
                var expirations: UInt64 = 0
                _ = withUnsafeMutableBytes(of: &expirations) { Glibc.read(timerFD, $0.baseAddress, 8) }
                expireDeadlines()
            }
        }
    }

    /// Ends the waits whose deadline has passed, and arms the timer for the earliest left.
    private func expireDeadlines() {
        let now = ContinuousClock.now
        let expired = state.withLock { state -> [(Int32, UInt32)] in
            let expired = state.deadlines.removeExpired(now: now).compactMap { fd in
                state.waiters[fd].map { (fd, $0.id) }
            }
            state.timerDeadline = nil
            if let earliest = state.deadlines.earliest { setTimer(earliest, in: &state) }
            return expired
        }
        for (fd, id) in expired { finish(fd: fd, id: id, with: .timedOut) }
    }
}

extension SocketReactor: TaskExecutor {
    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let wake = state.withLock { state in
            state.jobs.append(job)
            // One wake-up is enough for every job queued until the loop runs them.
            defer { state.sleeping = false }
            return state.sleeping
        }
        if wake {
            var one: UInt64 = 1
            _ = withUnsafeBytes(of: &one) { Glibc.write(wakeFD, $0.baseAddress, 8) }
        }
    }
}
