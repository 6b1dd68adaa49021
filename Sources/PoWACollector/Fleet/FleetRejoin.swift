/// A collector's return to the fleet after it lost its membership session (the repository
/// restarted, the connection broke): what it asks for, so that when the fleet is unchanged
/// every member gets back the servers it owned, whose snapshots it spooled meanwhile.
///
/// - Its member id is the one it had: while that id is held and it left less than a lease
///   (plus a margin) ago, the holder may be its own previous session, which the repository ends
///   within the lease, so the join fails and is tried again (`keepsMemberID`). Later, or at a
///   first join, it draws another id.
/// - Its servers: for a grace of one lease after the rejoin (the time the other members need
///   to come back), at each tick it takes back the servers it held when it left that no member
///   holds (`reclaims`), before the assignment, which keeps current owners up to their quota;
///   of what the assignment gives it, it takes only those (`wanted`): the others stay unowned
///   until their previous owner is back, or the grace ends.
///
/// Pure: the membership session's loop (`FleetMember`) performs what it says.
struct FleetRejoin: Equatable {
    /// The servers this collector owned when its membership session was lost.
    let heldWhenLeft: Set<Int>
    /// Until then, it takes no server it did not hold.
    let graceEnds: ContinuousClock.Instant

    /// Added to the lease before a held id is given up: the previous session's last statement
    /// and the repository's timer are not to the millisecond.
    static func idMargin(lease: Duration) -> Duration { lease / 2 }

    /// Whether a join whose member id is held keeps that id (the attempt fails, to be made
    /// again) rather than draw another: when this collector was a member and left (`leftAt`)
    /// less than a lease and its margin ago.
    static func keepsMemberID(leftAt: ContinuousClock.Instant?, now: ContinuousClock.Instant, lease: Duration) -> Bool {
        guard let leftAt else { return false }
        return now - leftAt < lease + idMargin(lease: lease)
    }

    /// The return of a member that joined at `now`: nil at a first join (it never left).
    init?(leftAt: ContinuousClock.Instant?, heldWhenLeft: Set<Int>, joinedAt now: ContinuousClock.Instant, lease: Duration) {
        guard leftAt != nil else { return nil }
        self.init(heldWhenLeft: heldWhenLeft, graceEnds: now + lease)
    }

    init(heldWhenLeft: Set<Int>, graceEnds: ContinuousClock.Instant) {
        self.heldWhenLeft = heldWhenLeft
        self.graceEnds = graceEnds
    }

    func inGrace(at now: ContinuousClock.Instant) -> Bool { now < graceEnds }

    /// The locks to take back before the assignment: during the grace, the servers held when
    /// it left that are still active and that no member holds.
    func reclaims(servers: [Int], owners: [Int: Int], at now: ContinuousClock.Instant) -> Set<Int> {
        guard inGrace(at: now) else { return [] }
        return heldWhenLeft.intersection(servers).filter { owners[$0] == nil }
    }

    /// Of the servers the assignment gives this member (`share`), those it may take now: during
    /// the grace, only those it held when it left.
    func wanted(_ share: Set<Int>, at now: ContinuousClock.Instant) -> Set<Int> {
        inGrace(at: now) ? share.intersection(heldWhenLeft) : share
    }
}
