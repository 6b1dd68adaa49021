import Testing

@testable import PoWACollector

@Suite("Scheduling", .timeLimit(.minutes(4)))
struct ScheduleTests {
    @Test("snapshot k is due at origin + k * frequency, whatever the snapshots took")
    func driftFree() {
        let now = ContinuousClock.now
        var schedule = SnapshotSchedule(frequency: .seconds(5), origin: now)
        schedule.advance(now: now + .milliseconds(700))
        #expect(schedule.nextDue == now + .seconds(5))
        schedule.advance(now: now + .seconds(5) + .milliseconds(900))
        #expect(schedule.nextDue == now + .seconds(10))
    }

    @Test("an overrun runs one late snapshot at once and skips the rest of the missed slots")
    func overrun() {
        let now = ContinuousClock.now
        var schedule = SnapshotSchedule(frequency: .seconds(5), origin: now)
        schedule.advance(now: now + .seconds(17))
        #expect(schedule.nextDue == now + .seconds(15))
    }

    @Test("slots missed entirely (a frozen or held-back worker) are skipped before the late snapshot, not made up after it")
    func skipMissed() {
        let now = ContinuousClock.now
        var schedule = SnapshotSchedule(frequency: .seconds(5), origin: now)
        // 23 s late: the late snapshot stands for the slot at 20 s, the next is at 25 s.
        schedule.skipMissed(now: now + .seconds(23))
        #expect(schedule.nextDue == now + .seconds(20))
        schedule.advance(now: now + .seconds(23) + .milliseconds(100))
        #expect(schedule.nextDue == now + .seconds(25))
        // Due but not late by a whole period: nothing skipped.
        schedule.skipMissed(now: now + .seconds(29))
        #expect(schedule.nextDue == now + .seconds(25))
    }

    @Test("a recent snapshot keeps its phase; one older than two periods, or none, gets a random offset")
    func startingPhase() {
        let now = ContinuousClock.now
        let recent = SnapshotSchedule.starting(frequency: .seconds(60), lastSnapshot: .secondsAgo(20), now: now)
        #expect(recent.nextDue == now + .seconds(40))
        let stale = SnapshotSchedule.starting(
            frequency: .seconds(60), lastSnapshot: .secondsAgo(600), now: now, randomFraction: 0.25)
        #expect(stale.nextDue == now + .seconds(15))
        let never = SnapshotSchedule.starting(frequency: .seconds(60), lastSnapshot: .never, now: now, randomFraction: 0.5)
        #expect(never.nextDue == now + .seconds(30))
        let offsets = (0..<50).map { _ in
            SnapshotSchedule.starting(frequency: .seconds(60), lastSnapshot: .never, now: now).nextDue - now
        }
        #expect(offsets.allSatisfy { $0 >= .zero && $0 < .seconds(60) })
        #expect(Set(offsets).count > 1)
    }

    @Test("a snapshot that fell due before the worker started runs within 5 s, before a period is lost")
    func startingLate() {
        let now = ContinuousClock.now
        // 70 s old at frequency 60: due 10 s ago, so within 5 s, spread.
        let late = (0..<50).map { _ in
            SnapshotSchedule.starting(frequency: .seconds(60), lastSnapshot: .secondsAgo(70), now: now).nextDue - now
        }
        #expect(late.allSatisfy { $0 >= .zero && $0 < .seconds(5) }, "\(late)")
        #expect(Set(late).count > 1)
        let latest = SnapshotSchedule.starting(
            frequency: .seconds(60), lastSnapshot: .secondsAgo(70), now: now, randomFraction: 0.999)
        #expect(latest.nextDue - now < .seconds(5))
        // 118 s old: only 2 s are left before a period is lost.
        let nearlyLost = SnapshotSchedule.starting(
            frequency: .seconds(60), lastSnapshot: .secondsAgo(118), now: now, randomFraction: 0.999)
        #expect(nearlyLost.nextDue - now < .seconds(2))
        // Exactly one period old: due now, within the window.
        let due = SnapshotSchedule.starting(
            frequency: .seconds(60), lastSnapshot: .secondsAgo(60), now: now, randomFraction: 0.5)
        #expect(due.nextDue == now + .milliseconds(2500))
        // Two periods or more: the random phase again.
        let lost = SnapshotSchedule.starting(
            frequency: .seconds(60), lastSnapshot: .secondsAgo(120), now: now, randomFraction: 0.5)
        #expect(lost.nextDue == now + .seconds(30))
    }
}
