import Testing

@testable import PoWACollector

/// A collector's return to the fleet after its membership session was lost: its member id and
/// the servers it asks for, decided without a server.
@Suite("Fleet rejoin")
struct FleetRejoinTests {
    static let lease = Duration.seconds(10)

    @Test("a held member id is kept within a lease and its margin of leaving; later, or at a first join, another is drawn")
    func memberID() {
        let left = ContinuousClock.now
        let margin = FleetRejoin.idMargin(lease: Self.lease)
        #expect(margin > .zero)
        #expect(FleetRejoin.keepsMemberID(leftAt: left, now: left, lease: Self.lease))
        #expect(FleetRejoin.keepsMemberID(leftAt: left, now: left + Self.lease, lease: Self.lease))
        #expect(FleetRejoin.keepsMemberID(leftAt: left, now: left + Self.lease + margin - .milliseconds(1), lease: Self.lease))
        #expect(!FleetRejoin.keepsMemberID(leftAt: left, now: left + Self.lease + margin, lease: Self.lease))
        #expect(!FleetRejoin.keepsMemberID(leftAt: nil, now: left, lease: Self.lease))
    }

    @Test("a first join is no rejoin; a rejoin's grace lasts one lease from the join, also with nothing held")
    func grace() throws {
        let joined = ContinuousClock.now
        #expect(FleetRejoin(leftAt: nil, heldWhenLeft: [1, 2], joinedAt: joined, lease: Self.lease) == nil)
        let rejoin = try #require(
            FleetRejoin(leftAt: joined - .seconds(3), heldWhenLeft: [], joinedAt: joined, lease: Self.lease))
        #expect(rejoin.inGrace(at: joined) && rejoin.inGrace(at: joined + Self.lease - .milliseconds(1)))
        #expect(!rejoin.inGrace(at: joined + Self.lease))
        #expect(rejoin.wanted([1, 2, 3], at: joined).isEmpty, "nothing held: nothing taken during the grace")
    }

    @Test("during the grace, takes back what it held, still active and held by no member; nothing once it is over")
    func reclaims() {
        let joined = ContinuousClock.now
        let rejoin = FleetRejoin(heldWhenLeft: [1, 2, 3, 4], graceEnds: joined + Self.lease)
        // 3 is held by another member, 4 no longer active, 5 never held.
        let owners = [3: 77, 6: 77]
        #expect(rejoin.reclaims(servers: [1, 2, 3, 5, 6], owners: owners, at: joined) == [1, 2])
        #expect(rejoin.reclaims(servers: [1, 2, 3, 5, 6], owners: owners, at: joined + Self.lease).isEmpty)
    }

    @Test("during the grace, of its share takes only what it held; after it, the whole share")
    func wanted() {
        let joined = ContinuousClock.now
        let rejoin = FleetRejoin(heldWhenLeft: [1, 2, 3], graceEnds: joined + Self.lease)
        #expect(rejoin.wanted([1, 2, 4, 5, 6], at: joined) == [1, 2])
        #expect(rejoin.wanted([1, 2, 4, 5, 6], at: joined + Self.lease) == [1, 2, 4, 5, 6])
    }

    @Test(
        "two members back one after the other from a repository restart: the first, alone for a while, takes only its own; the fleet ends as it was"
    )
    func restartKeepsTheDivision() {
        let (a, b) = (11, 22)
        let servers = Array(1...6)
        let before = FleetAssignment(servers: servers, members: [a, b], currentOwners: [:]).owners
        let held = { (member: Int) in Set(before.filter { $0.value == member }.map(\.key)) }
        let joined = ContinuousClock.now
        let rejoinA = FleetRejoin(heldWhenLeft: held(a), graceEnds: joined + Self.lease)
        let rejoinB = FleetRejoin(heldWhenLeft: held(b), graceEnds: joined + .seconds(2) + Self.lease)

        // A's first tick, alone: it takes back its own, and the assignment's share of it (all 6)
        // is cut down to those.
        var owners: [Int: Int] = [:]
        for server in rejoinA.reclaims(servers: servers, owners: owners, at: joined) { owners[server] = a }
        let aloneShare = FleetAssignment(servers: servers, members: [a], currentOwners: owners).servers(of: a)
        #expect(aloneShare == Set(servers))
        #expect(rejoinA.wanted(aloneShare, at: joined) == held(a))
        // B back 2 s later: its own are free, and both shares are what they were.
        let later = joined + .seconds(2)
        for server in rejoinB.reclaims(servers: servers, owners: owners, at: later) { owners[server] = b }
        #expect(owners == before)
        let after = FleetAssignment(servers: servers, members: [a, b], currentOwners: owners)
        #expect(after.owners == before)
    }
}
