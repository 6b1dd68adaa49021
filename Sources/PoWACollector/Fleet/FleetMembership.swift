import Synchronization

/// What this collector knows of the fleet it belongs to: whether it is a member now (and its
/// membership session, which holds its locks), whether it leads, which servers it owns, and
/// what the other members said of theirs.
///
/// The membership session's loop (`FleetMember`) writes it; workers read their fence from it,
/// the fleet reconcile reads which servers to run, and the leader's answers read the statuses.
/// A collector alone on its repository is a fleet of one: it leads and owns every server.
public final class FleetMembership: Sendable {
    struct State {
        var memberID: Int
        /// The backend pid of the membership session; nil while this collector is no member.
        var memberPID: Int32?
        var isLeader = false
        /// Servers whose lock this collector holds and whose workers may snapshot.
        var owned: Set<Int> = []
        /// Given up: no snapshot may start, the lock is held until the worker has stopped.
        var releasing: Set<Int> = []
        /// Workers stopped: their locks are dropped at the next tick.
        var released: Set<Int> = []
        var view = FleetView()
        /// The active servers of the last reload.
        var servers: [Int] = []
        /// Counts the changes of `servers`: the version a tick divided last is `assigned`.
        var serversVersion: UInt64 = 0
        var assigned: UInt64 = 0
        /// Reloads waiting for a tick to divide their servers (`setServers`), by version.
        var assignmentWaiters: [(version: UInt64, answer: PendingAnswer<Void>)] = []
        /// Counts the ticks that took or gave up servers: a reconcile that followed the
        /// latest needs no other.
        var ownershipVersion: UInt64 = 0
        /// What the other members said of their servers: server → (member, status).
        var peers: [Int: (member: Int, status: WorkerStatus)] = [:]
        /// The servers owned when the membership session was last lost: while this collector
        /// is no member, their workers spool their snapshots (`SnapshotSpool`), which land
        /// only once the fleet gives the server back to this collector.
        var heldWhenLeft: Set<Int> = []
        /// When the membership session was last lost (nil: never a member, or the repository
        /// moved since): a join within a lease of it keeps the member id (`FleetRejoin`).
        var leftAt: ContinuousClock.Instant?
    }

    private let state: Mutex<State>
    /// Yields once, when the first tick as a member is done.
    private let firstTick = AsyncStream<Void>.makeStream()

    init(memberID: Int = FleetMembership.randomMemberID()) {
        state = Mutex(State(memberID: memberID))
    }

    /// Returns once this collector has joined the fleet and taken its servers for the first
    /// time (or at once when its task is cancelled). One caller: the start-up.
    func joined() async {
        for await _ in firstTick.stream { return }
    }

    /// The first tick is done (later calls do nothing).
    func ticked() {
        firstTick.continuation.yield()
        firstTick.continuation.finish()
    }

    /// A member id: random, positive, an `int4`.
    static func randomMemberID() -> Int { Int.random(in: 1...Int(Int32.max)) }

    var memberID: Int { state.withLock { $0.memberID } }
    var isMember: Bool { state.withLock { $0.memberPID != nil } }
    var isLeader: Bool { state.withLock { $0.isLeader } }
    var view: FleetView { state.withLock { $0.view } }
    var owned: Set<Int> { state.withLock { $0.owned } }

    /// Whether this collector is no member now and owned `serverID` when its membership
    /// session was lost: its worker spools what it reads until the fleet is joined again.
    func heldWhenLeft(serverID: Int) -> Bool {
        state.withLock { $0.memberPID == nil && $0.heldWhenLeft.contains(serverID) }
    }

    /// The pid of the membership session, when it holds `serverID`'s lock: what a snapshot of
    /// that server checks in its own transaction before it commits. Nil: no snapshot now.
    func fence(serverID: Int) -> Int32? {
        state.withLock { $0.owned.contains(serverID) ? $0.memberPID : nil }
    }

    /// The active servers of a reload, which the assignment divides. Returns what to await
    /// until a tick of the membership has divided them (the reload's reconcile then follows
    /// this collector's share at once); nil when there is nothing to wait for: the list is
    /// unchanged and divided already, or this collector is no member now.
    func setServers(_ servers: [Int]) -> PendingAnswer<Void>? {
        state.withLock { state in
            if state.servers != servers {
                state.servers = servers
                state.serversVersion += 1
            }
            guard state.memberPID != nil, state.assigned < state.serversVersion else { return nil }
            let answer = PendingAnswer<Void>()
            state.assignmentWaiters.append((state.serversVersion, answer))
            return answer
        }
    }

    /// What a reconcile follows, read together: the servers to run workers for (those owned;
    /// nil while this collector is no member, its membership session lost: then the workers
    /// stay as they are, their snapshots held back by their fences, until the fleet is joined
    /// again), those given up and still locked (their workers may still be finishing a
    /// snapshot), and the version of that ownership (`ownershipVersion`).
    var ownership: (owned: Set<Int>?, releasing: Set<Int>, version: UInt64) {
        state.withLock { ($0.memberPID == nil ? nil : $0.owned, $0.releasing, $0.ownershipVersion) }
    }

    /// The version of the ownership: it changes at each tick that took or gave up servers.
    var ownershipVersion: UInt64 { state.withLock { $0.ownershipVersion } }

    // MARK: The membership session's bookkeeping

    func withState<R>(_ body: (inout State) -> R) -> R { state.withLock { body(&$0) } }

    /// The membership session was lost: its locks went with it (and no tick divides the
    /// servers of a reload until it joins again: the reload waits no longer). `movedAway`: it
    /// was on a repository the collector no longer uses, whose servers and ids mean nothing on
    /// the new one: the next join there is a first one.
    func left(movedAway: Bool = false) {
        let waiters = state.withLock { state in
            defer { state.assignmentWaiters = [] }
            if movedAway {
                state.heldWhenLeft = []
                state.leftAt = nil
            } else if state.memberPID != nil {
                state.heldWhenLeft = state.owned
                state.leftAt = .now
            }
            state.memberPID = nil
            state.isLeader = false
            state.owned = []
            state.releasing = []
            state.released = []
            state.view = FleetView()
            return state.assignmentWaiters
        }
        for waiter in waiters { waiter.answer.give(nil) }
    }

    /// A tick divided the servers of `version` (taking or giving up servers when `changed`):
    /// the reloads waiting for it go on.
    func assigned(_ version: UInt64, changed: Bool) {
        let done = state.withLock { state in
            if changed { state.ownershipVersion += 1 }
            state.assigned = max(state.assigned, version)
            let done = state.assignmentWaiters.filter { $0.version <= state.assigned }
            state.assignmentWaiters.removeAll { $0.version <= state.assigned }
            return done
        }
        for waiter in done { waiter.answer.give(()) }
    }

    /// The workers of `servers` (given up earlier) have stopped: their locks may go.
    func workersStopped(_ servers: Set<Int>) {
        state.withLock { state in
            let stopped = state.releasing.intersection(servers)
            state.releasing.subtract(stopped)
            state.released.formUnion(stopped)
        }
    }

    // MARK: Answers for the fleet

    /// Records what a member said of its servers.
    func peerStatuses(member: Int, _ statuses: [Int: WorkerStatus]) {
        state.withLock { state in
            guard member != state.memberID else { return }
            for (server, status) in statuses { state.peers[server] = (member, status) }
        }
    }

    /// The statuses of the whole fleet, as the leader answers WORKERS_STATUS: this collector's
    /// own workers (`local`), except for servers `pg_locks` shows another member owning, whose
    /// status is what that member said (servers it has not spoken of yet are left out).
    func fleetStatuses(local: [Int: WorkerStatus], serverID: Int? = nil) -> [Int: WorkerStatus] {
        state.withLock { state in
            var result: [Int: WorkerStatus] = [:]
            for (server, status) in local where state.view.owners[server].map({ $0 == state.memberID }) ?? true {
                result[server] = status
            }
            for (server, owner) in state.view.owners where owner != state.memberID {
                if let peer = state.peers[server], peer.member == owner { result[server] = peer.status }
            }
            if let serverID { return result.filter { $0.key == serverID } }
            return result
        }
    }
}
