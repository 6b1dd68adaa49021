/// A worker's decisions, as a value: events in (a session opened or lost, bookkeeping done, a
/// wake-up with the mailbox's requests, a snapshot ended), the next action out (connect,
/// prepare, wait, take a snapshot, stop). `Worker.run` only carries the actions out, so every
/// decision here is unit-tested without a network; the worker's status is derived from the
/// state.
struct WorkerCycle {
    typealias Instant = ContinuousClock.Instant

    /// What the worker does next.
    enum Action: Equatable {
        /// Open a session to the remote.
        case connect
        /// Record the remote's versions and read the server's last snapshot (`prepared` or
        /// `preparationFailed` next).
        case prepare
        /// Wait until then, whatever arrives in the mailbox (a backoff).
        case pause(until: Instant)
        /// Wait until then or until a request arrives (`woke` next).
        case wait(until: Instant)
        /// Take a snapshot (`snapshotEnded` next).
        case snapshot(SnapshotPlan)
        /// The worker's task ends (its server went to another collector).
        case stop
    }

    /// A snapshot to take.
    struct SnapshotPlan: Equatable {
        /// The lane whose slot it waits for: a server whose last snapshot ran out of time waits
        /// in the suspects' lane.
        let lane: SnapshotSlots.Lane
        /// The server's `snapts` as this worker last saw it.
        var mark: SnapshotMark?
        /// The fleet's fence it commits under (nil: no fleet).
        let fence: Int32?
        /// How long its remote may send nothing before it leaves a regular slot (nil: no
        /// limit, as for `powa-collector once`, which has no other servers to starve).
        var silenceLimit: Duration? = .milliseconds(500)
        /// Into the spool, without trying the repository: this collector lost its membership
        /// while it owned the server (its snapshots land once the fleet gives it back).
        var spoolOnly = false
    }

    /// How a snapshot ended, as far as the cycle is concerned.
    enum SnapshotEnd: Equatable {
        /// With the server's `snapts` it set, when it began (its slot taken), and the longest
        /// its remote took to answer.
        case landed(SnapshotMark?, began: Instant, longestWait: Duration? = nil)
        /// Failed and reported; `repositoryDown`: the repository cannot be reached.
        case failed(repositoryDown: Bool)
        /// Ran out of time, or was given up after its remote stayed silent for `silentFor`.
        case timedOut(silentFor: Duration? = nil)
        /// The remote session broke.
        case remoteLost
        /// The remote may not be snapshotted (reported in `powa_snapshot_metas.errors`).
        case refused(PoWACompatibility.Refusal)
        /// The remote's powa changed under the session: a fresh one, then the snapshot.
        case reopen
        /// Another collector's snapshot landed meanwhile: the schedule follows it.
        case landedElsewhere(SnapshotMark, secondsAgo: Double?)
        /// Rolled back on purpose (another snapshot commits now, the server changes hands):
        /// the same slot in a moment.
        case heldBack
        /// Written to the spool (or lost), the repository unable to take it.
        case spooled
    }

    /// Why the bookkeeping could not be done.
    enum PreparationProblem: Equatable {
        case remoteDown
        case repositoryDown
        /// No `powa_snapshot_metas` row for the server.
        case unregistered
    }

    /// What the fleet says about the server at a wake-up.
    enum Ownership: Equatable {
        /// No fleet (`once`), or owned under this fence.
        case owned(fence: Int32?)
        /// Owned by no one here now; `member`: this collector is in the fleet at all.
        case notOwned(member: Bool)
        /// This collector is no member now, and owned the server when it left: its snapshots
        /// go to the spool.
        case heldWhenLeft
    }

    private enum Phase: Equatable {
        case disconnected
        case connected
        case ready
    }

    /// Why the worker's status is not `running`, if it is not.
    private enum Trouble: Equatable {
        case remoteDown
        case repositoryDown
        case unregistered
        case refused(PoWACompatibility.Refusal)
    }

    let frequency: Duration
    private var phase = Phase.disconnected
    private var trouble: Trouble? = .remoteDown
    private var backoff = Backoff()
    private(set) var schedule: SnapshotSchedule?
    /// The versions are recorded again before the next snapshot (a session opened, a reload).
    private var needsBookkeeping = true
    /// The repository could not take the bookkeeping: until then, snapshots go on without it
    /// (into the spool), so that a remote's reconnect during an outage does not stop them.
    private var bookkeepingDeferredUntil: Instant?
    /// The server's `snapts` as this worker last saw it.
    private(set) var mark: SnapshotMark?
    /// When the last snapshot that landed began (about its `snapts`): a scheduled one never
    /// begins within half a period of it, so that a late snapshot and the on-time one after
    /// it never land in the same instant (powa-web would compute rates over milliseconds).
    private var lastLanded: Instant?
    /// The last snapshot ran out of time: the next one waits in the suspects' lane.
    private(set) var suspect = false
    /// The longest the remote took to answer in the last snapshot that landed.
    private var longestWait: Duration?
    /// The refusal last reported (logged once, until it changes).
    private(set) var refusal: PoWACompatibility.Refusal?
    /// The slot whose snapshot was already retried on a new session.
    private var retriedSlot: Int?
    /// A forced snapshot (FORCE_SNAPSHOT) not taken yet.
    private var forced = false
    /// The snapshot in flight is the one the schedule had due.
    private var snapshotWasDue = false
    /// The last wake-up found a snapshot to take on a server this collector does not own now.
    private(set) var isHeldBack = false

    init(frequency: Duration) { self.frequency = frequency }

    /// The worker's status, as powa-web shows it.
    var status: WorkerStatus {
        switch trouble {
        case nil: phase == .ready ? .running : .noRemoteConnection
        case .remoteDown: .noRemoteConnection
        case .repositoryDown: .noRepositoryConnection
        case .unregistered: .stopped
        case .refused(let refusal): refusal.status
        }
    }

    /// When the next scheduled snapshot may begin.
    var nextSnapshot: Instant? {
        guard let schedule else { return nil }
        let spaced = lastLanded.map { $0 + schedule.frequency / 2 } ?? schedule.nextDue
        return max(schedule.nextDue, spaced)
    }

    // MARK: Events

    /// The worker starts.
    mutating func start() -> Action { .connect }

    mutating func connected() -> Action {
        phase = .connected
        backoff.reset()
        needsBookkeeping = true
        if trouble == .remoteDown { trouble = nil }
        return .prepare
    }

    mutating func connectFailed(now: Instant) -> Action {
        phase = .disconnected
        trouble = .remoteDown
        return .pause(until: now + backoff.next())
    }

    /// The session broke while the worker waited or before a snapshot.
    mutating func lost() -> Action {
        phase = .disconnected
        return .connect
    }

    /// The bookkeeping is done: `start` is the first schedule, following the server's `snapts`
    /// `lastMark`, both kept only for the worker's first schedule.
    mutating func prepared(start: SnapshotSchedule, lastMark: SnapshotMark?, now: Instant) -> Action {
        phase = .ready
        needsBookkeeping = false
        bookkeepingDeferredUntil = nil
        if schedule == nil {
            schedule = start
            mark = lastMark
        }
        backoff.reset()
        // A refusal stands until a snapshot lands.
        trouble = refusal.map { .refused($0) }
        return waitForNext(now: now)
    }

    mutating func preparationFailed(_ problem: PreparationProblem, now: Instant) -> Action {
        if problem == .repositoryDown, schedule != nil, phase != .disconnected {
            // Prepared once already: the schedule goes on, the bookkeeping is tried again later.
            phase = .ready
            trouble = .repositoryDown
            bookkeepingDeferredUntil = now + backoff.next()
            return waitForNext(now: now)
        }
        switch problem {
        case .remoteDown: trouble = .remoteDown
        case .repositoryDown: trouble = .repositoryDown
        case .unregistered: trouble = .unregistered
        }
        return .pause(until: now + backoff.next())
    }

    /// A paused worker goes on: a session first, then the bookkeeping, then the schedule.
    mutating func resumed(now: Instant, remoteAlive: Bool) -> Action {
        guard phase != .disconnected, remoteAlive else { return lost() }
        guard !needsBookkeeping, schedule != nil else { return .prepare }
        return waitForNext(now: now)
    }

    /// The wait ended (its time came or a request arrived) with the mailbox's `requests`;
    /// `remoteAlive`: the session passed its probe; `ownership`: what the fleet says now.
    mutating func woke(
        requests: Set<WorkerMailbox.Request>, now: Instant, remoteAlive: Bool, ownership: Ownership
    ) -> Action {
        isHeldBack = false
        if requests.contains(.retire) { return .stop }
        if requests.contains(.forceSnapshot) { forced = true }
        if requests.contains(.recheckVersions) { needsBookkeeping = true }
        guard remoteAlive, phase != .disconnected else { return lost() }
        let deferred = bookkeepingDeferredUntil.map { now < $0 } ?? false
        if (needsBookkeeping && !deferred) || schedule == nil { return .prepare }
        guard var current = schedule, let next = nextSnapshot else { return .prepare }
        let due = now >= next
        guard due || forced else { return .wait(until: next) }
        if due {
            current.skipMissed(now: now)
            schedule = current
        }
        switch ownership {
        case .notOwned(let member):
            // Its lock may be on its way to another member, or the membership session is being
            // restored: a second later, the same slot.
            if !member { trouble = .repositoryDown }
            isHeldBack = true
            return .wait(until: now + .seconds(1))
        case .owned(let fence):
            forced = false
            snapshotWasDue = due
            return .snapshot(
                SnapshotPlan(
                    lane: suspect ? .suspects : .regular, mark: mark, fence: fence,
                    silenceLimit: SnapshotSlots.silenceLimit(frequency: frequency, longestWait: longestWait)))
        case .heldWhenLeft:
            // The due snapshot only: a forced one waits for the repository.
            guard due else { return .wait(until: next) }
            trouble = .repositoryDown
            snapshotWasDue = true
            return .snapshot(
                SnapshotPlan(
                    lane: suspect ? .suspects : .regular, mark: mark, fence: nil,
                    silenceLimit: SnapshotSlots.silenceLimit(frequency: frequency, longestWait: longestWait),
                    spoolOnly: true))
        }
    }

    /// Spooled snapshots of the server landed before the snapshot in flight: the server's
    /// `snapts` is now `newMark`, whatever becomes of that snapshot.
    mutating func spoolLanded(mark newMark: SnapshotMark) {
        mark = newMark
    }

    /// The snapshot `woke` asked for ended.
    mutating func snapshotEnded(_ end: SnapshotEnd, now: Instant) -> Action {
        let due = snapshotWasDue
        snapshotWasDue = false
        switch end {
        case .landed(let landedMark, let began, let wait):
            // The repository is back: the bookkeeping deferred is done at the next wake-up.
            bookkeepingDeferredUntil = nil
            suspect = false
            longestWait = wait ?? longestWait
            mark = landedMark ?? mark
            lastLanded = began
            refusal = nil
            trouble = nil
        case .failed(let repositoryDown):
            if repositoryDown { trouble = .repositoryDown }
        case .timedOut(let silentFor):
            suspect = true
            // Given up for its silence: a server merely slow to send its first rows gets twice
            // as long next time, until one of its snapshots lands and says what it needs.
            if let silentFor { longestWait = max(longestWait ?? .zero, silentFor) }
        case .refused(let reason):
            refusal = reason
            trouble = .refused(reason)
        case .remoteLost:
            phase = .disconnected
            trouble = .remoteDown
            // Once per slot: a new session and the same snapshot, rather than a lost period (a
            // session the remote ended just now may pass the probe).
            // (Not advanced, the slot is still due once the session is back.)
            if due, let index = schedule?.index, retriedSlot != index {
                retriedSlot = index
                return .connect
            }
        case .reopen:
            // A fresh session, then the same snapshot (still due: not advanced).
            phase = .disconnected
            return .connect
        case .landedElsewhere(let newMark, let secondsAgo):
            // Taken by another collector (the previous owner's last one, committed late): this
            // one keeps its phase.
            mark = newMark
            schedule = SnapshotSchedule.starting(
                frequency: frequency, lastSnapshot: secondsAgo.map { .secondsAgo($0) } ?? .never, now: now)
            return waitForNext(now: now)
        case .heldBack:
            if !due { forced = true }
            return .wait(until: now + .seconds(1))
        case .spooled:
            // Not landed: the schedule goes on, the mark stays; the next one waits half a
            // period as after a landing (a late snapshot, spooled, and the one on time after it
            // never come in the same instant).
            trouble = .repositoryDown
            lastLanded = now
        }
        if due, var current = schedule {
            current.advance(now: now)
            schedule = current
        }
        return phase == .disconnected ? .connect : waitForNext(now: now)
    }

    private func waitForNext(now: Instant) -> Action {
        guard let next = nextSnapshot else { return .prepare }
        return .wait(until: forced ? now : next)
    }
}
