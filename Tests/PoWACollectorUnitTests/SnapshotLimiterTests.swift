import Synchronization
import TestWaiting
import Testing

@testable import PoWACollector

/// The snapshot slots, without a network.
@Suite("Snapshot slots", .timeLimit(.minutes(1)))
struct SnapshotLimiterTests {
    /// How many holders of each kind are inside their permit.
    private final class Inside: Sendable {
        private let counts = Mutex((suspects: 0, healthy: 0))
        func add(suspect: Bool, _ delta: Int) {
            counts.withLock { counts in
                if suspect { counts.suspects += delta } else { counts.healthy += delta }
            }
        }
        var suspects: Int { counts.withLock { $0.suspects } }
        var healthy: Int { counts.withLock { $0.healthy } }
    }

    /// A snapshot that holds its permit until its task is cancelled.
    private func hold(_ limiter: SnapshotLimiter, suspect: Bool, _ inside: Inside) -> Task<Void, Never> {
        Task {
            try? await limiter.withPermit(suspect: suspect) {
                inside.add(suspect: suspect, 1)
                defer { inside.add(suspect: suspect, -1) }
                try await Task.sleep(for: .seconds(60))
            }
        }
    }

    /// The holders the limiter has placed: given a slot, or queued.
    private func placed(_ limiter: SnapshotLimiter) -> Int {
        let usage = limiter.usage()
        return usage.inUse + usage.waiting
    }

    @Test("servers whose last snapshot timed out hold at most half the slots; healthy ones get the rest")
    func suspectLane() async throws {
        let limiter = SnapshotLimiter(permits: 4)
        #expect(limiter.suspectPermits == 2)
        let inside = Inside()
        let suspects = (0..<3).map { _ in hold(limiter, suspect: true, inside) }
        #expect(try await eventually { inside.suspects == 2 })
        // The third waits although two slots are free (once the limiter placed all three)...
        #expect(try await eventually { placed(limiter) == 3 })
        #expect(limiter.usage() == (2, 1) && inside.suspects == 2)
        // ...and does not hold back the healthy servers behind it.
        let healthy = (0..<3).map { _ in hold(limiter, suspect: false, inside) }
        #expect(try await eventually { inside.healthy == 2 && placed(limiter) == 6 })
        #expect(limiter.usage() == (4, 2) && inside.healthy == 2)

        // A suspect leaves: its lane's slot goes to the waiting suspect, not to a healthy one.
        suspects[0].cancel()
        #expect(try await eventually { inside.suspects == 2 && inside.healthy == 2 })
        // A healthy one leaves: the waiting healthy one takes its slot.
        healthy[0].cancel()
        #expect(try await eventually { inside.healthy == 2 })
        for task in suspects + healthy { task.cancel() }
        for task in suspects + healthy { await task.value }
        #expect(inside.suspects == 0 && inside.healthy == 0)
    }

    @Test("one slot: suspects still get it in turn")
    func singleSlot() async throws {
        let limiter = SnapshotLimiter(permits: 1)
        let inside = Inside()
        let first = hold(limiter, suspect: true, inside)
        #expect(try await eventually { inside.suspects == 1 })
        let second = hold(limiter, suspect: false, inside)
        #expect(try await eventually { placed(limiter) == 2 })
        #expect(limiter.usage() == (1, 1) && inside.healthy == 0)
        first.cancel()
        #expect(try await eventually { inside.healthy == 1 })
        second.cancel()
        await second.value
    }
}
