import Testing

@testable import PoWACollector

/// The parts of the collector's loop, without a server: its runs (one at a time, the requests
/// that wait sharing the next run), the answers it gives, the workers' runs it stops.
@Suite("Collector loop")
struct CollectorLoopTests {
    typealias Runs = ReloadRuns<String>

    @Test("a request starts a run at once when none goes on; the run answers it")
    func startsAtOnce() {
        var runs = Runs()
        #expect(runs.request(.reload(rereadFile: true), waiter: "a") == .reload(rereadFile: true))
        #expect(runs.running == .reload(rereadFile: true))
        let (served, next) = runs.ended()
        #expect(served == ["a"])
        #expect(next == nil)
        #expect(runs.running == nil)
    }

    @Test("requests during a run share the next one, which runs the latest reload asked for")
    func coalesces() {
        var runs = Runs()
        _ = runs.request(.reload(rereadFile: false), waiter: "start-up")
        #expect(runs.request(.reload(rereadFile: true), waiter: "sighup") == nil)
        #expect(runs.request(.followAssignment, waiter: "fleet") == nil)
        #expect(runs.request(.reload(rereadFile: true), waiter: "RELOAD") == nil)
        let first = runs.ended()
        #expect(first.served == ["start-up"])
        #expect(first.next == .reload(rereadFile: true))
        let second = runs.ended()
        #expect(second.served == ["sighup", "fleet", "RELOAD"])
        #expect(second.next == nil)
    }

    @Test("the workers following the fleet run only when no reload waits (a reload ends so too)")
    func followYields() {
        var runs = Runs()
        _ = runs.request(.followAssignment)
        #expect(runs.request(.followAssignment) == nil)
        #expect(runs.request(.reload(rereadFile: true)) == nil)
        #expect(runs.request(.followAssignment) == nil)
        #expect(runs.ended().next == .reload(rereadFile: true))
        #expect(runs.ended().next == nil)
    }

    @Test("the loop ending: the requests of the run going on and of the next are given up")
    func abandon() {
        var runs = Runs()
        _ = runs.request(.reload(rereadFile: true), waiter: "running")
        _ = runs.request(.reload(rereadFile: true), waiter: "waiting")
        #expect(runs.abandon() == ["running", "waiting"])
        #expect(runs.ended() == ([], nil))
    }

    @Test("an answer awaited by a task cancelled first is nil, and later answers are ignored")
    func cancelledAsker() async {
        let answer = PendingAnswer<Int>()
        let asker = Task { await answer.value() }
        asker.cancel()
        #expect(await asker.value == nil)
        answer.give(1)
        let given = PendingAnswer<Int>()
        given.give(2)
        given.give(3)
        #expect(await given.value() == 2)
    }

    @Test("a worker run: stop() cancels the worker and stopped() waits for its end")
    func workerRun() async {
        let run = WorkerRun()
        let cancelled = PendingAnswer<Bool>()
        async let child: Void = run.run {
            try? await Task.sleep(for: .seconds(60))
            cancelled.give(Task.isCancelled)
        }
        run.stop()
        await run.stopped()
        #expect(await cancelled.value() == true)
        await child
        // Stopped before it ran: it never runs long.
        let early = WorkerRun()
        early.stop()
        await early.run { try? await Task.sleep(for: .seconds(60)) }
        await early.stopped()
    }
}
