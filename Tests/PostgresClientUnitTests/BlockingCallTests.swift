import Foundation
import Synchronization
import TestWaiting
import Testing

@testable import PostgresClient

/// The thread of a blocking libpq call against its caller's deadline and cancellation, without
/// a network: the call is a sleep.
@Suite("Blocking calls", .timeLimit(.minutes(1)))
struct BlockingCallTests {
    /// What the abandoned call handed back, and when.
    final class Abandoned: Sendable {
        let results = Mutex<[Int]>([])
    }

    /// How many calls run now, and the most that ran at once.
    final class Concurrency: Sendable {
        let calls = Mutex((now: 0, most: 0))
    }

    @Test("a call that outlives its deadline: the caller returns at the deadline, the call's result is released later")
    func deadline() async throws {
        let abandoned = Abandoned()
        let started = ContinuousClock.now
        let outcome = await BlockingCall.run(until: started + .milliseconds(200)) {
            Thread.sleep(forTimeInterval: 1)
            return 42
        } abandoned: { result in
            abandoned.results.withLock { $0.append(result) }
        }
        let waited = ContinuousClock.now - started
        guard case .timedOut = outcome else { Issue.record("\(outcome)"); return }
        #expect(waited >= .milliseconds(200) && waited < .milliseconds(800))
        #expect(abandoned.results.withLock { $0 }.isEmpty)
        #expect(try await eventually(timeout: .seconds(3)) { abandoned.results.withLock { $0 } == [42] })
    }

    @Test("a call that ends in time: its result, nothing abandoned")
    func finished() async throws {
        let abandoned = Abandoned()
        let outcome = await BlockingCall.run(until: .now + .seconds(5)) {
            7
        } abandoned: { result in
            abandoned.results.withLock { $0.append(result) }
        }
        guard case .finished(let value) = outcome else { Issue.record("\(outcome)"); return }
        #expect(value == 7)
        #expect(abandoned.results.withLock { $0 }.isEmpty)
    }

    @Test("a cancelled caller returns at once; a call never started in a cancelled task")
    func cancellation() async throws {
        let abandoned = Abandoned()
        let running = Abandoned()
        let task = Task {
            await BlockingCall.run(until: .now + .seconds(30)) {
                running.results.withLock { $0.append(1) }
                Thread.sleep(forTimeInterval: 1)
                return 1
            } abandoned: { result in
                abandoned.results.withLock { $0.append(result) }
            }
        }
        #expect(
            try await eventually(timeout: .seconds(2), interval: .milliseconds(10)) { !running.results.withLock { $0 }.isEmpty })
        let started = ContinuousClock.now
        task.cancel()
        guard case .cancelled = await task.value else { Issue.record("not cancelled"); return }
        #expect(ContinuousClock.now - started < .milliseconds(500))
        #expect(try await eventually(timeout: .seconds(3)) { abandoned.results.withLock { $0 } == [1] })

        let ran = Abandoned()
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return await BlockingCall.run(until: .now + .seconds(30)) {
                ran.results.withLock { $0.append(1) }
                return 1
            } abandoned: { _ in
            }
        }
        guard case .cancelled = await early.value else { Issue.record("not cancelled"); return }
        #expect(ran.results.withLock { $0 }.isEmpty)
    }

    @Test(
        "at most so many calls at once, abandoned ones included; the next waits for a slot until its deadline, or is served when one frees"
    )
    func overload() async throws {
        let slots = BlockingCall.Slots(maximum: 5)
        let abandoned = Abandoned()
        let release = Abandoned()
        // Calls that hang until released, each abandoned by its caller at once.
        for _ in 0..<slots.maximum {
            let outcome = await BlockingCall.run(until: .now + .milliseconds(1), slots: slots) {
                while release.results.withLock({ $0.isEmpty }) { Thread.sleep(forTimeInterval: 0.01) }
                return 0
            } abandoned: { result in
                abandoned.results.withLock { $0.append(result) }
            }
            guard case .timedOut = outcome else { Issue.record("\(outcome)"); return }
        }
        // No slot before its deadline: refused at the deadline, not before, not much after.
        let started = ContinuousClock.now
        let refused = await BlockingCall.run(until: .now + .milliseconds(300), slots: slots) {
            1
        } abandoned: { _ in
        }
        let waited = ContinuousClock.now - started
        guard case .overloaded = refused else { Issue.record("\(refused)"); return }
        #expect(waited >= .milliseconds(300) && waited < .milliseconds(1500), "\(waited)")
        // A cancelled waiter leaves at once.
        let cancelled = Task {
            await BlockingCall.run(until: .now + .seconds(30), slots: slots) {
                3
            } abandoned: { _ in
            }
        }
        #expect(try await eventually(timeout: .seconds(5), interval: .milliseconds(5)) { slots.load.waiting == 1 })
        let cancelling = ContinuousClock.now
        cancelled.cancel()
        guard case .cancelled = await cancelled.value else { Issue.record("not cancelled"); return }
        #expect(ContinuousClock.now - cancelling < .milliseconds(500))
        #expect(slots.load.waiting == 0)
        // One waiting when the slots free is served.
        let waiting = Task {
            await BlockingCall.run(until: .now + .seconds(10), slots: slots) {
                2
            } abandoned: { _ in
            }
        }
        #expect(try await eventually(timeout: .seconds(5), interval: .milliseconds(5)) { slots.load.waiting == 1 })
        release.results.withLock { $0.append(1) }
        guard case .finished(2) = await waiting.value else { Issue.record("the waiting call was not served"); return }
        #expect(
            try await eventually(timeout: .seconds(5)) {
                abandoned.results.withLock { $0.count } == slots.maximum
            })
        // Every slot back.
        #expect(try await eventually(timeout: .seconds(5)) { slots.load == (0, 0) })
    }

    @Test("a storm of calls (a thousand workers starting) takes turns: every one served, never more at once than the slots")
    func storm() async throws {
        let slots = BlockingCall.Slots(maximum: 4)
        let running = Concurrency()
        let outcomes = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<40 {
                group.addTask {
                    let outcome = await BlockingCall.run(until: .now + .seconds(20), slots: slots) {
                        running.calls.withLock {
                            $0.now += 1
                            $0.most = max($0.most, $0.now)
                        }
                        Thread.sleep(forTimeInterval: 0.02)
                        running.calls.withLock { $0.now -= 1 }
                        return 1
                    } abandoned: { _ in
                    }
                    if case .finished = outcome { return true }
                    return false
                }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(outcomes.count == 40 && outcomes.allSatisfy { $0 })
        #expect(running.calls.withLock { $0.most } <= slots.maximum)
        #expect(slots.load == (0, 0))
    }
}
