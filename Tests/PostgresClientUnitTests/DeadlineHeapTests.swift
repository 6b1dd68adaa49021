import Testing

@testable import PostgresClient

/// The reactor's deadlines, against a plain dictionary doing the same operations.
@Suite("Deadline heap")
struct DeadlineHeapTests {
    let origin = ContinuousClock.now

    func at(_ milliseconds: Int) -> ContinuousClock.Instant { origin + .milliseconds(milliseconds) }

    @Test("the earliest first; a key moved or removed takes its deadline along")
    func basics() {
        var heap = DeadlineHeap<Int32>()
        #expect(heap.earliest == nil)
        heap.set(7, deadline: at(300))
        heap.set(8, deadline: at(100))
        heap.set(9, deadline: at(200))
        #expect(heap.earliest == at(100))
        heap.set(8, deadline: at(400))
        #expect(heap.earliest == at(200))
        #expect(heap.deadline(of: 8) == at(400))
        heap.remove(9)
        heap.remove(42)
        #expect(heap.earliest == at(300))
        #expect(heap.removeExpired(now: at(350)) == [7])
        #expect(heap.count == 1)
        #expect(heap.removeExpired(now: at(400)) == [8])
        #expect(heap.isEmpty && heap.earliest == nil)
    }

    @Test("ten thousand random operations agree with a dictionary")
    func randomized() {
        var heap = DeadlineHeap<Int32>()
        var model: [Int32: Int] = [:]
        var generator = SystemRandomNumberGenerator()
        var now = 0
        for _ in 0..<10_000 {
            let key = Int32.random(in: 0..<64, using: &generator)
            switch Int.random(in: 0..<10, using: &generator) {
            case 0..<6:
                let deadline = now + Int.random(in: 0..<1000, using: &generator)
                heap.set(key, deadline: at(deadline))
                model[key] = deadline
            case 6..<8:
                heap.remove(key)
                model[key] = nil
            default:
                now += Int.random(in: 0..<100, using: &generator)
                let expired = heap.removeExpired(now: at(now))
                let expected = model.filter { $0.value <= now }
                #expect(Set(expired) == Set(expected.keys))
                #expect(expired.map { expected[$0]! } == expected.values.sorted())
                for key in expected.keys { model[key] = nil }
            }
            #expect(heap.count == model.count)
            #expect(heap.earliest == model.values.min().map(at))
            #expect(heap.deadline(of: key) == model[key].map(at))
        }
    }
}
