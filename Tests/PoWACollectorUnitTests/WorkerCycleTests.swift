import Testing

@testable import PoWACollector

/// The worker's decisions, event by event, without a network.
@Suite("Worker cycle")
struct WorkerCycleTests {
    private let frequency = Duration.seconds(10)
    private let t0 = ContinuousClock.now
    private let owned = WorkerCycle.Ownership.owned(fence: 7)

    /// A worker connected and prepared, its first snapshot due at `t0 + offset`.
    private func ready(firstDueIn offset: Duration = .seconds(3)) -> WorkerCycle {
        var cycle = WorkerCycle(frequency: frequency)
        #expect(cycle.start() == .connect)
        #expect(cycle.status == .noRemoteConnection)
        #expect(cycle.connected() == .prepare)
        let action = cycle.prepared(start: SnapshotSchedule(frequency: frequency, origin: t0 + offset), lastMark: nil, now: t0)
        #expect(action == .wait(until: t0 + offset))
        #expect(cycle.status == .running)
        return cycle
    }

    private func plan(
        _ lane: SnapshotSlots.Lane = .regular, mark: SnapshotMark? = nil, silenceLimit: Duration = .milliseconds(500)
    ) -> WorkerCycle.Action {
        .snapshot(WorkerCycle.SnapshotPlan(lane: lane, mark: mark, fence: 7, silenceLimit: silenceLimit))
    }

    @Test("a failed connect backs off, the next attempt reconnects, and the status says why")
    func connectBackoff() {
        var cycle = WorkerCycle(frequency: frequency)
        _ = cycle.start()
        guard case .pause(let until) = cycle.connectFailed(now: t0) else {
            Issue.record("no backoff")
            return
        }
        #expect(until >= t0 + .milliseconds(900) && until <= t0 + .milliseconds(1100))
        #expect(cycle.status == .noRemoteConnection)
        #expect(cycle.resumed(now: until, remoteAlive: false) == .connect)
        guard case .pause(let second) = cycle.connectFailed(now: t0) else { return }
        #expect(second >= t0 + .milliseconds(1800), "the backoff doubles")
    }

    @Test("bookkeeping failures: a backoff, the status of the side that failed, stopped without a snapts row")
    func preparationFailures() {
        var cycle = WorkerCycle(frequency: frequency)
        _ = cycle.start()
        _ = cycle.connected()
        guard case .pause(let until) = cycle.preparationFailed(.repositoryDown, now: t0) else { return }
        #expect(cycle.status == .noRepositoryConnection)
        #expect(cycle.resumed(now: until, remoteAlive: true) == .prepare)
        _ = cycle.preparationFailed(.unregistered, now: t0)
        #expect(cycle.status == .stopped)
        #expect(cycle.resumed(now: until, remoteAlive: false) == .connect)
    }

    @Test("due snapshots follow the schedule; a request before it is only a wake-up")
    func schedule() {
        var cycle = ready()
        #expect(
            cycle.woke(requests: [], now: t0 + .seconds(1), remoteAlive: true, ownership: owned) == .wait(until: t0 + .seconds(3))
        )
        #expect(cycle.woke(requests: [], now: t0 + .seconds(3), remoteAlive: true, ownership: owned) == plan())
        #expect(
            cycle.snapshotEnded(.landed(nil, began: t0 + .seconds(3)), now: t0 + .seconds(4)) == .wait(until: t0 + .seconds(13)))
    }

    @Test("FORCE_SNAPSHOT runs at once and leaves the schedule as it was")
    func forced() {
        var cycle = ready()
        #expect(cycle.woke(requests: [.forceSnapshot], now: t0 + .seconds(1), remoteAlive: true, ownership: owned) == plan())
        let next = cycle.snapshotEnded(.landed(nil, began: t0 + .seconds(1)), now: t0 + .seconds(1.5))
        // Due at t0 + 3 s, but not within half a period of the one that just landed.
        #expect(next == .wait(until: t0 + .seconds(6)))
    }

    @Test("a late snapshot skips the slots missed, then the next one is a period after the last slot")
    func late() {
        var cycle = ready()
        #expect(cycle.woke(requests: [], now: t0 + .seconds(35), remoteAlive: true, ownership: owned) == plan())
        #expect(
            cycle.snapshotEnded(.landed(nil, began: t0 + .seconds(35)), now: t0 + .seconds(36)) == .wait(until: t0 + .seconds(43))
        )
    }

    @Test("a snapshot that ran out of time sends the next one to the suspects' lane, until one lands")
    func suspects() {
        var cycle = ready()
        _ = cycle.woke(requests: [], now: t0 + .seconds(3), remoteAlive: true, ownership: owned)
        #expect(cycle.snapshotEnded(.timedOut(), now: t0 + .seconds(8)) == .wait(until: t0 + .seconds(13)))
        #expect(cycle.suspect)
        #expect(cycle.status == .running)
        #expect(cycle.woke(requests: [], now: t0 + .seconds(13), remoteAlive: true, ownership: owned) == plan(.suspects))
        _ = cycle.snapshotEnded(.landed(nil, began: t0 + .seconds(13)), now: t0 + .seconds(14))
        #expect(!cycle.suspect)
        #expect(cycle.woke(requests: [], now: t0 + .seconds(23), remoteAlive: true, ownership: owned) == plan())
    }

    @Test("a session lost during a due snapshot: a new one, then the same slot, once")
    func remoteLostRetriedOnce() {
        var cycle = ready()
        _ = cycle.woke(requests: [], now: t0 + .seconds(3), remoteAlive: true, ownership: owned)
        #expect(cycle.snapshotEnded(.remoteLost, now: t0 + .seconds(3.5)) == .connect)
        #expect(cycle.status == .noRemoteConnection)
        #expect(cycle.connected() == .prepare)
        let start = SnapshotSchedule(frequency: frequency, origin: t0 + .seconds(50))
        #expect(cycle.prepared(start: start, lastMark: nil, now: t0 + .seconds(4)) == .wait(until: t0 + .seconds(3)))
        #expect(cycle.woke(requests: [], now: t0 + .seconds(4), remoteAlive: true, ownership: owned) == plan())
        // Lost again in the same slot: that slot is given up.
        #expect(cycle.snapshotEnded(.remoteLost, now: t0 + .seconds(4.5)) == .connect)
        _ = cycle.connected()
        #expect(cycle.prepared(start: start, lastMark: nil, now: t0 + .seconds(5)) == .wait(until: t0 + .seconds(13)))
    }

    @Test("a session found dead at a wake-up is reopened, a pending FORCE_SNAPSHOT kept")
    func deadAtWakeUp() {
        var cycle = ready()
        #expect(cycle.woke(requests: [.forceSnapshot], now: t0 + .seconds(1), remoteAlive: false, ownership: owned) == .connect)
        _ = cycle.connected()
        let start = SnapshotSchedule(frequency: frequency, origin: t0 + .seconds(3))
        #expect(cycle.prepared(start: start, lastMark: nil, now: t0 + .seconds(2)) == .wait(until: t0 + .seconds(2)))
        #expect(cycle.woke(requests: [], now: t0 + .seconds(2), remoteAlive: true, ownership: owned) == plan())
    }

    @Test("a server not owned now: the same slot a second later, and no repository status unless out of the fleet")
    func notOwned() {
        var cycle = ready()
        let waiting = cycle.woke(requests: [], now: t0 + .seconds(3), remoteAlive: true, ownership: .notOwned(member: true))
        #expect(waiting == .wait(until: t0 + .seconds(4)))
        #expect(cycle.isHeldBack)
        #expect(cycle.status == .running)
        _ = cycle.woke(requests: [], now: t0 + .seconds(4), remoteAlive: true, ownership: .notOwned(member: false))
        #expect(cycle.status == .noRepositoryConnection)
        #expect(cycle.woke(requests: [], now: t0 + .seconds(5), remoteAlive: true, ownership: owned) == plan())
        #expect(!cycle.isHeldBack)
        _ = cycle.snapshotEnded(.landed(nil, began: t0 + .seconds(5)), now: t0 + .seconds(5))
        #expect(cycle.status == .running)
    }

    @Test("rolled back for another snapshot: the same slot a second later; one landed elsewhere sets the phase")
    func superseded() {
        var cycle = ready()
        _ = cycle.woke(requests: [], now: t0 + .seconds(3), remoteAlive: true, ownership: owned)
        #expect(cycle.snapshotEnded(.heldBack, now: t0 + .seconds(3)) == .wait(until: t0 + .seconds(4)))
        #expect(cycle.woke(requests: [], now: t0 + .seconds(4), remoteAlive: true, ownership: owned) == plan())
        let mark = SnapshotMark("1700000000.5")
        #expect(
            cycle.snapshotEnded(.landedElsewhere(mark, secondsAgo: 2), now: t0 + .seconds(4)) == .wait(until: t0 + .seconds(12)))
        #expect(cycle.mark == mark)
        #expect(cycle.woke(requests: [], now: t0 + .seconds(12), remoteAlive: true, ownership: owned) == plan(mark: mark))
    }

    @Test("a refusal shows its status until a snapshot lands; the bookkeeping keeps it")
    func refused() throws {
        var cycle = ready()
        _ = cycle.woke(requests: [], now: t0 + .seconds(3), remoteAlive: true, ownership: owned)
        let refusal = try #require(PoWACompatibility.check(remote: nil, repository: "4.1.4", database: "postgres"))
        _ = cycle.snapshotEnded(.refused(refusal), now: t0 + .seconds(3))
        #expect(cycle.status == .powaMissing)
        #expect(cycle.woke(requests: [.recheckVersions], now: t0 + .seconds(5), remoteAlive: true, ownership: owned) == .prepare)
        _ = cycle.prepared(start: SnapshotSchedule(frequency: frequency, origin: t0), lastMark: nil, now: t0 + .seconds(5))
        #expect(cycle.status == .powaMissing)
        _ = cycle.woke(requests: [], now: t0 + .seconds(13), remoteAlive: true, ownership: owned)
        _ = cycle.snapshotEnded(.landed(nil, began: t0 + .seconds(13)), now: t0 + .seconds(13))
        #expect(cycle.status == .running && cycle.refusal == nil)
    }

    @Test("a failure on the repository's side shows until the next snapshot lands; retire stops the worker")
    func repositoryDownAndRetire() {
        var cycle = ready()
        _ = cycle.woke(requests: [], now: t0 + .seconds(3), remoteAlive: true, ownership: owned)
        #expect(cycle.snapshotEnded(.failed(repositoryDown: true), now: t0 + .seconds(3)) == .wait(until: t0 + .seconds(13)))
        #expect(cycle.status == .noRepositoryConnection)
        #expect(
            cycle.woke(requests: [.retire, .forceSnapshot], now: t0 + .seconds(4), remoteAlive: true, ownership: owned) == .stop)
    }

    @Test("a remote slow to answer gets a longer silence limit for its next snapshot")
    func learnedSilenceLimit() {
        var cycle = ready()
        #expect(cycle.woke(requests: [], now: t0 + .seconds(3), remoteAlive: true, ownership: owned) == plan())
        let landed = WorkerCycle.SnapshotEnd.landed(nil, began: t0 + .seconds(3), longestWait: .seconds(1.5))
        _ = cycle.snapshotEnded(landed, now: t0 + .seconds(5))
        let next = cycle.woke(requests: [], now: t0 + .seconds(13), remoteAlive: true, ownership: owned)
        #expect(next == plan(silenceLimit: .seconds(3)))
    }

    @Test("a snapshot given up for its silence: the suspects' lane next, then twice the limit back in the regular one")
    func givenUpForSilence() {
        var cycle = ready()
        _ = cycle.woke(requests: [], now: t0 + .seconds(3), remoteAlive: true, ownership: owned)
        _ = cycle.snapshotEnded(.timedOut(silentFor: .milliseconds(500)), now: t0 + .seconds(4))
        let inLane = cycle.woke(requests: [], now: t0 + .seconds(13), remoteAlive: true, ownership: owned)
        #expect(inLane == plan(.suspects, silenceLimit: .seconds(1)))
        // Landed in the lane, measured: what it needed sets the next limit.
        let landed = WorkerCycle.SnapshotEnd.landed(nil, began: t0 + .seconds(13), longestWait: .milliseconds(700))
        _ = cycle.snapshotEnded(landed, now: t0 + .seconds(14))
        let next = cycle.woke(requests: [], now: t0 + .seconds(23), remoteAlive: true, ownership: owned)
        #expect(next == plan(silenceLimit: .milliseconds(1400)))
    }

    @Test("a refusal's status comes back once the session and the bookkeeping are back")
    func refusalOutlivesOutage() throws {
        var cycle = ready()
        _ = cycle.woke(requests: [], now: t0 + .seconds(3), remoteAlive: true, ownership: owned)
        let refusal = try #require(PoWACompatibility.check(remote: "3.2", repository: "4.1.4", database: "powa"))
        _ = cycle.snapshotEnded(.refused(refusal), now: t0 + .seconds(3))
        #expect(cycle.woke(requests: [], now: t0 + .seconds(4), remoteAlive: false, ownership: owned) == .connect)
        _ = cycle.connectFailed(now: t0 + .seconds(4))
        #expect(cycle.status == .noRemoteConnection)
        _ = cycle.connected()
        _ = cycle.prepared(
            start: SnapshotSchedule(frequency: frequency, origin: t0), lastMark: nil, now: t0 + .seconds(5))
        #expect(cycle.status == .incompatibleVersion)
    }

    @Test(
        "the membership lost while the server was owned: due snapshots go to the spool, on schedule; the mark follows landed spools"
    )
    func spooling() {
        var cycle = ready()
        let due = t0 + .seconds(3)
        let action = cycle.woke(requests: [], now: due, remoteAlive: true, ownership: .heldWhenLeft)
        guard case .snapshot(let spooled) = action else {
            Issue.record("no snapshot: \(action)")
            return
        }
        #expect(spooled.spoolOnly && spooled.fence == nil)
        #expect(cycle.status == .noRepositoryConnection)
        // Spooled: the next one a period later, the mark unchanged.
        #expect(cycle.snapshotEnded(.spooled, now: due + .seconds(1)) == .wait(until: due + frequency))
        #expect(cycle.status == .noRepositoryConnection)
        // A forced snapshot waits for the repository.
        #expect(
            cycle.woke(requests: [.forceSnapshot], now: due + .seconds(2), remoteAlive: true, ownership: .heldWhenLeft)
                == .wait(until: due + frequency))
        // Back in the fleet: the spool landed first, then the snapshot; its plan has the new mark.
        cycle.spoolLanded(mark: SnapshotMark("42"))
        #expect(
            cycle.woke(requests: [], now: due + frequency, remoteAlive: true, ownership: owned) == plan(mark: SnapshotMark("42")))
        _ = cycle.snapshotEnded(.landed(SnapshotMark("43"), began: due + frequency), now: due + frequency + .seconds(1))
        #expect(cycle.status == .running)
    }

    @Test("prepared once, a remote session reopened while the repository is down: the schedule goes on without the bookkeeping")
    func bookkeepingDeferred() {
        var cycle = ready()
        let due = t0 + .seconds(3)
        #expect(cycle.lost() == .connect)
        #expect(cycle.connected() == .prepare)
        // Not a backoff: the due snapshot is taken (into the spool), the bookkeeping later.
        #expect(cycle.preparationFailed(.repositoryDown, now: due) == .wait(until: due))
        #expect(cycle.status == .noRepositoryConnection)
        guard case .snapshot(let plan) = cycle.woke(requests: [], now: due, remoteAlive: true, ownership: .heldWhenLeft)
        else {
            Issue.record("no snapshot")
            return
        }
        #expect(plan.spoolOnly)
        #expect(cycle.snapshotEnded(.spooled, now: due + .seconds(1)) == .wait(until: due + frequency))
        // The backoff passed: the bookkeeping is tried again before the next snapshot.
        #expect(cycle.woke(requests: [], now: due + frequency, remoteAlive: true, ownership: owned) == .prepare)
        // A worker never prepared still backs off.
        var fresh = WorkerCycle(frequency: frequency)
        _ = fresh.start()
        _ = fresh.connected()
        guard case .pause = fresh.preparationFailed(.repositoryDown, now: t0) else {
            Issue.record("no backoff")
            return
        }
    }
}
