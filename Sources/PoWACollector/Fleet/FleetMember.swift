import Logging
import PostgresClient

/// This collector's membership of the fleet, carried out on its membership session (the
/// control channel's connection, the only owner of that session): joining, the heartbeat that
/// keeps the lease, and at each tick what the fleet looks like in `pg_locks`, which servers to
/// take or give up (`FleetAssignment`), and the statuses told to the other members.
///
/// The lease: the session runs with `idle_session_timeout` (PostgreSQL 14+), and each tick is a
/// statement, so a collector that stops running (SIGSTOP, a stalled VM, a network partition)
/// has its session ended by the repository itself, and its locks with it, within `lease`.
struct FleetMember {
    let state: FleetMembership
    let board: WorkerBoard
    /// How long the repository lets the membership session stay silent before it ends it.
    let lease: Duration
    let logger: Logger
    /// Where the collector hears that servers were taken or given up: the workers must follow.
    let events: AsyncStream<CollectorEvent>.Continuation

    /// What the others were last told, per server (reset at each join).
    private var told: [Int: WorkerStatus] = [:]
    /// The members seen at the last tick, and their sessions: a new session (a new member, or
    /// one that rejoined and missed what was said meanwhile) is told every status.
    private var members: Set<Int> = []
    private var memberSessions: Set<Int32> = []
    /// The leader seen at the last tick (nil: none), to log a change.
    private var leader: Int32? = nil
    /// Joined since the last tick: the workers follow the first assignment whatever it is
    /// (those left from a previous membership may belong to others now).
    private var justJoined = false
    /// Set when this join is a return (`FleetRejoin`): until its grace ends, this member takes
    /// back the servers it held when it left, and no other.
    private var rejoin: FleetRejoin? = nil

    init(
        state: FleetMembership, board: WorkerBoard, lease: Duration, logger: Logger,
        events: AsyncStream<CollectorEvent>.Continuation
    ) {
        self.state = state
        self.board = board
        self.lease = lease
        self.logger = logger
        self.events = events
    }

    /// Takes a membership on `repository` (a fresh session): a member id not held by any live
    /// session, the lease, and `LISTEN` on the fleet's own channel. A collector that was a
    /// member keeps its id: while it is held less than a lease after it left (by its own
    /// previous session, maybe, not ended yet), the join fails, to be tried again.
    mutating func join(_ repository: PoWARepository, deadline: ContinuousClock.Instant) async throws {
        told = [:]
        members = []
        memberSessions = []
        leader = nil
        justJoined = true
        rejoin = nil
        var joined = false
        for _ in 0..<8 {
            let id = state.memberID
            if try await repository.tryMembership(id, deadline: deadline) {
                joined = true
                break
            }
            // Held: by another collector, or by this one's previous session, not ended yet.
            let leftAt = state.withState { $0.leftAt }
            if FleetRejoin.keepsMemberID(leftAt: leftAt, now: .now, lease: lease) {
                logger.info(
                    "fleet: member id still held, maybe by this collector's previous session until the repository ends it: joining again later under it",
                    metadata: ["member": "\(id)"])
                throw CollectorError("member id \(id) still held")
            }
            state.withState { $0.memberID = FleetMembership.randomMemberID() }
        }
        guard joined else { throw CollectorError("no free member id in the repository's advisory locks") }
        do {
            try await repository.endSession(afterSilence: lease, deadline: deadline)
        } catch let error as PostgresError where error.sqlState == "42704" {
            logger.warning(
                "fleet: the repository (before PostgreSQL 14) has no idle_session_timeout: a hung collector keeps its servers until its connection breaks"
            )
        }
        try await repository.listen(FleetMessage.channel, deadline: deadline)
        let pid = repository.connection.backendPID
        let lease = lease
        rejoin = state.withState { state in
            state.memberPID = pid
            return FleetRejoin(leftAt: state.leftAt, heldWhenLeft: state.heldWhenLeft, joinedAt: .now, lease: lease)
        }
        if let rejoin {
            logger.info(
                "fleet: joined", metadata: ["member": "\(state.memberID)", "reclaiming": "\(rejoin.heldWhenLeft.sorted())"])
        } else {
            logger.info("fleet: joined", metadata: ["member": "\(state.memberID)"])
        }
    }

    /// The heartbeat, and what the fleet's current shape asks of this member.
    mutating func tick(_ repository: PoWARepository, deadline: ContinuousClock.Instant) async throws {
        var view = try await repository.fleetView(deadline: deadline)
        let me = state.memberID
        let pid = repository.connection.backendPID
        if view.leaderPID == nil, try await repository.tryLeadership(deadline: deadline) {
            view.leaderPID = pid
        }
        // Locks of stopped workers go first: the assignment may hand those servers to another.
        let released = state.withState { state in
            defer { state.released = [] }
            return state.released
        }
        if !released.isEmpty {
            try await repository.releaseServerLocks(released, deadline: deadline)
            for server in released where view.owners[server] == me { view.owners[server] = nil }
            logger.info("fleet: servers handed over", metadata: ["member": "\(me)", "servers": "\(released.sorted())"])
        }

        let (servers, serversVersion) = state.withState { ($0.servers, $0.serversVersion) }
        // Back after a lost session: the servers held then first, so that the assignment keeps
        // them here (it keeps current owners up to their quota).
        let now = ContinuousClock.now
        let takenBack = try await acquire(
            rejoin?.reclaims(servers: servers, owners: view.owners, at: now) ?? [], repository, deadline: deadline)
        for server in takenBack { view.owners[server] = me }
        if !takenBack.isEmpty {
            logger.info("fleet: servers taken back", metadata: ["member": "\(me)", "servers": "\(takenBack.sorted())"])
        }
        let share = FleetAssignment(servers: servers, members: Set(view.members.keys), currentOwners: view.owners)
            .servers(of: me)
        let mine = rejoin?.wanted(share, at: now) ?? share
        // Locks this session holds, whatever this member believes: one taken by a statement
        // that failed half-way is adopted, never taken twice (a session lock counts each
        // acquisition, and one unlock would leave it held).
        let held = Set(view.owners.compactMap { $0.value == me ? $0.key : nil })
        let (revoked, reclaimed, wanted) = state.withState { state -> (Set<Int>, Set<Int>, Set<Int>) in
            state.owned.formUnion(held.subtracting(state.releasing))
            let revoked = state.owned.subtracting(mine)
            let reclaimed = state.releasing.intersection(mine)
            state.owned.subtract(revoked)
            state.releasing.subtract(reclaimed)
            state.releasing.formUnion(revoked)
            state.owned.formUnion(reclaimed)
            return (revoked, reclaimed, mine.subtracting(state.owned).subtracting(state.releasing))
        }
        // A server another member still holds is taken at a later tick, once it let go.
        let taken = try await acquire(wanted, repository, deadline: deadline)
        for server in taken { view.owners[server] = me }
        let isLeader = view.leaderPID == pid
        state.withState { state in
            state.owned.formUnion(taken)
            state.view = view
            state.isLeader = isLeader
        }
        if !revoked.isEmpty {
            logger.info("fleet: giving servers up", metadata: ["member": "\(me)", "servers": "\(revoked.sorted())"])
        }
        if !taken.isEmpty || !reclaimed.isEmpty {
            logger.info(
                "fleet: servers taken", metadata: ["member": "\(me)", "servers": "\(taken.union(reclaimed).sorted())"])
        }
        let changed = justJoined || !revoked.isEmpty || !taken.isEmpty || !reclaimed.isEmpty || !takenBack.isEmpty
        state.assigned(serversVersion, changed: changed)
        if changed { events.yield(.ownershipChanged(answer: nil)) }
        justJoined = false
        if let rejoin, !rejoin.inGrace(at: now) {
            // This tick followed the assignment as any other: the return is over.
            self.rejoin = nil
            state.withState { $0.heldWhenLeft = [] }
            logger.info("fleet: rejoin grace over, every server follows the assignment", metadata: ["member": "\(me)"])
        }
        state.ticked()

        let current = Set(view.members.keys)
        if current != members || view.leaderPID != leader {
            let leaderID = view.members.first { $0.value == view.leaderPID }?.key
            logger.info(
                "fleet: \(current.count) member(s)",
                metadata: [
                    "member": "\(me)", "members": "\(current.sorted())", "leader": "\(leaderID.map(String.init) ?? "none")",
                ])
        }
        let sessions = Set(view.members.values)
        let someoneJoined = !sessions.subtracting(memberSessions).isEmpty
        members = current
        memberSessions = sessions
        leader = view.leaderPID
        if current.count > 1 {
            try await tellStatuses(repository, everything: someoneJoined, deadline: deadline)
        } else {
            told = [:]
        }
    }

    /// Tries the locks of `servers`; returns those it got. When the repository's lock table is
    /// full, those locked so far are adopted at the next tick, the others wait: the membership
    /// itself goes on.
    private func acquire(
        _ servers: Set<Int>, _ repository: PoWARepository, deadline: ContinuousClock.Instant
    ) async throws -> Set<Int> {
        guard !servers.isEmpty else { return [] }
        do {
            return try await repository.acquireServerLocks(servers, deadline: deadline)
        } catch let error as PostgresError where error.sqlState == "53200" {
            logger.error(
                "fleet: the repository's lock table is full (raise max_locks_per_transaction): \(error)",
                metadata: ["member": "\(state.memberID)"])
            return []
        }
    }

    /// Tells the other members the statuses of this member's workers that changed since they
    /// were last told (all of them when a member joined).
    private mutating func tellStatuses(
        _ repository: PoWARepository, everything: Bool, deadline: ContinuousClock.Instant
    ) async throws {
        let owned = state.owned
        let statuses = board.statuses().filter { owned.contains($0.key) }
        let changed = everything ? statuses : statuses.filter { told[$0.key] != $0.value }
        guard !changed.isEmpty else { return }
        for payload in FleetMessage.statusPayloads(member: state.memberID, changed) {
            try await repository.notify(channel: FleetMessage.channel, payload: payload, deadline: deadline)
        }
        told = statuses
    }

    /// A message from another member.
    func receive(_ message: FleetMessage) {
        if case .statuses(let member, let statuses) = message { state.peerStatuses(member: member, statuses) }
    }
}
