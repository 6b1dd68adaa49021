import Synchronization
import TestWaiting
import Testing

@testable import PoWACollector

/// The snapshot slots' decisions, without a network.
@Suite("Snapshot slots")
struct SnapshotSlotsTests {
    @Test("the suspects' lane is half the regular slots, at least one, and apart from them")
    func capacities() {
        #expect(SnapshotSlots(permits: 4).suspectCapacity == 2)
        #expect(SnapshotSlots(permits: 1).suspectCapacity == 1)
        #expect(SnapshotSlots(permits: 0).regularCapacity == 1)
        #expect(SnapshotSlots(permits: 4).sessionBound == 6)
    }

    @Test("each lane serves its own waiters in order; a full suspects' lane never holds back a healthy server")
    func lanes() {
        var slots = SnapshotSlots(permits: 2)
        let step1 = slots.request(1, lane: .suspects)
        #expect(step1)
        let step2 = slots.request(2, lane: .suspects)
        #expect(!step2)
        let step3 = slots.request(3, lane: .regular)
        #expect(step3)
        let step4 = slots.request(4, lane: .regular)
        #expect(step4)
        let step5 = slots.request(5, lane: .regular)
        #expect(!step5)
        let step6 = slots.request(6, lane: .regular)
        #expect(!step6)
        #expect(slots.inUse == 3 && slots.waiting == 3)
        let step7 = slots.release(.suspects)
        #expect(step7 == 2)
        let step8 = slots.release(.regular)
        #expect(step8 == 5)
        let step9 = slots.withdraw(6)
        #expect(step9)
        let step10 = slots.withdraw(6)
        #expect(!step10)
        let step11 = slots.release(.regular)
        #expect(step11 == nil)
        #expect(slots.inUse == 2 && slots.waiting == 0)
    }

    @Test("a silent snapshot leaves its regular slot for the suspects' lane, its slot going to the next waiter")
    func moveToSuspects() {
        var slots = SnapshotSlots(permits: 2)
        let step12 = slots.request(1, lane: .regular)
        #expect(step12)
        let step13 = slots.request(2, lane: .regular)
        #expect(step13)
        let step14 = slots.request(3, lane: .regular)
        #expect(!step14)
        let step15 = slots.moveToSuspects()
        #expect(step15 == .moved(handingOverTo: 3))
        #expect(slots.regularInUse == 2 && slots.suspectsInUse == 1)
        // The lane (one slot) is full: the next silent one must give its snapshot up.
        let step16 = slots.moveToSuspects()
        #expect(step16 == .laneFull)
        #expect(slots.regularInUse == 2 && slots.suspectsInUse == 1)
        let step17 = slots.release(.suspects)
        #expect(step17 == nil)
        let step18 = slots.moveToSuspects()
        #expect(step18 == .moved(handingOverTo: nil))
        #expect(slots.regularInUse == 1)
    }

    @Test("the silence limit: 0.5 s at first, then twice the remote's longest answer, at most half a period")
    func silenceLimit() {
        #expect(SnapshotSlots.silenceLimit(frequency: .seconds(300), longestWait: nil) == .milliseconds(500))
        #expect(SnapshotSlots.silenceLimit(frequency: .seconds(300), longestWait: .milliseconds(10)) == .milliseconds(500))
        #expect(SnapshotSlots.silenceLimit(frequency: .seconds(300), longestWait: .seconds(3)) == .seconds(6))
        #expect(SnapshotSlots.silenceLimit(frequency: .seconds(5), longestWait: .seconds(2)) == .milliseconds(2500))
    }
}

/// The limiter that carries the slots' decisions out, with tasks but no network.
@Suite("Snapshot limiter", .timeLimit(.minutes(1)))
struct SnapshotLimiterTests {
    /// How many holders of each lane are inside their slot.
    private final class Inside: Sendable {
        private let counts = Mutex((suspects: 0, healthy: 0))
        func add(_ lane: SnapshotSlots.Lane, _ delta: Int) {
            counts.withLock { counts in
                if lane == .suspects { counts.suspects += delta } else { counts.healthy += delta }
            }
        }
        var suspects: Int { counts.withLock { $0.suspects } }
        var healthy: Int { counts.withLock { $0.healthy } }
    }

    /// A snapshot that holds its slot until its task is cancelled.
    private func hold(_ limiter: SnapshotLimiter, _ lane: SnapshotSlots.Lane, _ inside: Inside) -> Task<Void, Never> {
        Task {
            try? await limiter.withSlot(lane) { _ in
                inside.add(lane, 1)
                defer { inside.add(lane, -1) }
                try await Task.sleep(for: .seconds(60))
            }
        }
    }

    @Test("suspects wait in their lane while healthy servers take the regular slots")
    func suspectLane() async throws {
        let limiter = SnapshotLimiter(permits: 4)
        let inside = Inside()
        let suspects = (0..<3).map { _ in hold(limiter, .suspects, inside) }
        let healthy = (0..<5).map { _ in hold(limiter, .regular, inside) }
        #expect(try await eventually { inside.suspects == 2 && inside.healthy == 4 && limiter.usage().waiting == 2 })
        // A suspect leaves: its lane's slot goes to the waiting suspect, not to a healthy one.
        suspects[0].cancel()
        #expect(try await eventually { inside.suspects == 2 && limiter.usage().waiting == 1 })
        #expect(inside.healthy == 4)
        // A healthy one leaves: the waiting healthy one takes its slot.
        healthy[0].cancel()
        #expect(try await eventually { inside.healthy == 4 && limiter.usage().waiting == 0 })
        for task in suspects + healthy { task.cancel() }
        for task in suspects + healthy { await task.value }
        #expect(inside.suspects == 0 && inside.healthy == 0 && limiter.usage() == (0, 0))
    }

    @Test("a slot moved to the suspects' lane wakes the healthy server waiting for a regular one")
    func movedSlotWakesWaiter() async throws {
        let limiter = SnapshotLimiter(permits: 1)
        let inside = Inside()
        let moved = Mutex<Bool?>(nil)
        let silent = Task {
            try? await limiter.withSlot(.regular) { slot in
                #expect(slot.silenceWatch(limit: .seconds(1)).limit == .seconds(1))
                try await Task.sleep(for: .milliseconds(100))
                moved.withLock { $0 = slot.moveToSuspects() }
                try await Task.sleep(for: .seconds(60))
            }
        }
        let waiting = hold(limiter, .regular, inside)
        // (The waiter may be in before `moveToSuspects` has returned its answer.)
        #expect(try await eventually { inside.healthy == 1 && moved.withLock { $0 } != nil })
        #expect(moved.withLock { $0 } == true)
        #expect(limiter.usage().inUse == 2)
        silent.cancel()
        waiting.cancel()
        await silent.value
        await waiting.value
        #expect(limiter.usage() == (0, 0))
    }
}
