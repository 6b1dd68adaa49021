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
        /// What the other members said of their servers: server → (member, status).
        var peers: [Int: (member: Int, status: WorkerStatus)] = [:]
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

    /// The servers a reconcile should run workers for: those owned; nil while this collector
    /// is no member (its membership session is lost): then the workers stay as they are, their
    /// snapshots held back by their fences, until the fleet is joined again.
    var ownedServers: Set<Int>? { state.withLock { $0.memberPID == nil ? nil : $0.owned } }

    /// The pid of the membership session, when it holds `serverID`'s lock: what a snapshot of
    /// that server checks in its own transaction before it commits. Nil: no snapshot now.
    func fence(serverID: Int) -> Int32? {
        state.withLock { $0.owned.contains(serverID) ? $0.memberPID : nil }
    }

    /// The active servers of a reload, which the assignment divides.
    func setServers(_ servers: [Int]) { state.withLock { $0.servers = servers } }

    // MARK: The membership session's bookkeeping

    func withState<R>(_ body: (inout State) -> R) -> R { state.withLock { body(&$0) } }

    /// The membership session was lost: its locks went with it.
    func left() {
        state.withLock { state in
            state.memberPID = nil
            state.isLeader = false
            state.owned = []
            state.releasing = []
            state.released = []
            state.view = FleetView()
        }
    }

    /// The workers of `servers` (given up earlier) have stopped: their locks may go.
    func workersStopped(_ servers: Set<Int>) {
        state.withLock { state in
            let stopped = state.releasing.intersection(servers)
            state.releasing.subtract(stopped)
            state.released.formUnion(stopped)
        }
    }

    /// Servers given up and still locked (their workers may still be finishing a snapshot).
    var releasing: Set<Int> { state.withLock { $0.releasing } }

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
