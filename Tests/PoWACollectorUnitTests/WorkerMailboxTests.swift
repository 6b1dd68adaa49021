import Synchronization
import TestWaiting
import Testing

@testable import PoWACollector

/// A worker's mailbox, without a worker: how its wait ends.
@Suite("Worker mailbox", .timeLimit(.minutes(1)))
struct WorkerMailboxTests {
    final class Ended: Sendable {
        let instant = Mutex<ContinuousClock.Instant?>(nil)
    }

    @Test("a request posted before the wait ends it at once; requests merge and are taken once")
    func pendingFirst() async {
        let mailbox = WorkerMailbox()
        mailbox.post(.forceSnapshot)
        mailbox.post(.forceSnapshot)
        mailbox.post(.recheckVersions)
        #expect(mailbox.isPending(.forceSnapshot))
        let started = ContinuousClock.now
        await mailbox.wait(until: .now + .seconds(30))
        #expect(ContinuousClock.now - started < .seconds(1))
        #expect(mailbox.take() == [.forceSnapshot, .recheckVersions])
        #expect(mailbox.take().isEmpty)
        #expect(!mailbox.isPending(.forceSnapshot))
    }

    @Test("with nothing posted, the wait lasts until its deadline, not less, not much more")
    func deadline() async {
        let mailbox = WorkerMailbox()
        let started = ContinuousClock.now
        await mailbox.wait(until: started + .milliseconds(300))
        let waited = ContinuousClock.now - started
        #expect(waited >= .milliseconds(300) && waited < .milliseconds(800), "\(waited)")
    }

    @Test("a request posted during the wait ends it at once")
    func wakeUp() async throws {
        let mailbox = WorkerMailbox()
        let ended = Ended()
        let waiter = Task {
            await mailbox.wait(until: .now + .seconds(30))
            ended.instant.withLock { $0 = .now }
        }
        // The waiter sleeps: nothing ends its wait but the post. (Its deadline is 30 s away: a
        // wait that ended without a post would end at once, well within the 300 ms; and they
        // leave the waiter time to be inside its wait when the post comes.)
        #expect(!(try await eventually(timeout: .milliseconds(300)) { ended.instant.withLock { $0 } != nil }))
        let posted = ContinuousClock.now
        mailbox.post(.recheckVersions)
        await waiter.value
        let woken = try #require(ended.instant.withLock { $0 })
        #expect(woken - posted < .milliseconds(500))
        #expect(mailbox.take() == [.recheckVersions])
    }

    @Test("a cancelled wait ends at once, and leaves the requests for later")
    func cancellation() async throws {
        let mailbox = WorkerMailbox()
        let waiter = Task { await mailbox.wait(until: .now + .seconds(30)) }
        let cancelled = ContinuousClock.now
        waiter.cancel()
        await waiter.value
        #expect(ContinuousClock.now - cancelled < .milliseconds(500))
        mailbox.post(.forceSnapshot)
        #expect(mailbox.take() == [.forceSnapshot])
    }
}
