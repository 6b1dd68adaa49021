import Testing

@testable import PoWACollector

/// Who snapshots which server in a fleet of collectors, and what the members tell each other:
/// decided without a server.
@Suite("Fleet assignment")
struct FleetAssignmentTests {
    static func randomMembers(_ count: Int) -> Set<Int> {
        var members: Set<Int> = []
        while members.count < count { members.insert(FleetMembership.randomMemberID()) }
        return members
    }

    static func loads(_ assignment: FleetAssignment) -> [Int: Int] {
        assignment.owners.values.reduce(into: [:]) { $0[$1, default: 0] += 1 }
    }

    @Test("an empty fleet is divided evenly: every server has one owner, loads differ by one at most")
    func even() {
        for _ in 0..<200 {
            let memberCount = Int.random(in: 1...7)
            let members = Self.randomMembers(memberCount)
            let servers = (0..<Int.random(in: 0...60)).map { $0 + 1 }
            let assignment = FleetAssignment(servers: servers, members: members, currentOwners: [:])
            #expect(Set(assignment.owners.keys) == Set(servers))
            #expect(Set(assignment.owners.values).isSubset(of: members))
            let loads = members.map { Self.loads(assignment)[$0] ?? 0 }
            #expect(loads.max()! - loads.min()! <= 1, "\(loads)")
        }
    }

    @Test("the same inputs give the same plan, whatever their order; a balanced fleet stays as it is")
    func stable() {
        let members = Self.randomMembers(3)
        let servers = Array(1...9)
        let first = FleetAssignment(servers: servers, members: members, currentOwners: [:])
        let again = FleetAssignment(servers: servers.reversed() + [3, 3], members: members, currentOwners: [:])
        #expect(first == again)
        #expect(FleetAssignment(servers: servers, members: members, currentOwners: first.owners) == first)
    }

    @Test("a member joins: servers move only to it, and only as many as its share")
    func join() {
        for _ in 0..<200 {
            let members = Self.randomMembers(4)
            let old = Set(members.sorted().prefix(3))
            let newcomer = members.subtracting(old).first!
            let servers = Array(1...Int.random(in: 4...40))
            let before = FleetAssignment(servers: servers, members: old, currentOwners: [:])
            let after = FleetAssignment(servers: servers, members: members, currentOwners: before.owners)
            let moved = servers.filter { before.owners[$0] != after.owners[$0] }
            #expect(moved.allSatisfy { after.owners[$0] == newcomer })
            #expect(moved.count == servers.count / 4, "the newcomer takes ⌊N/M⌋, no more")
            let loads = members.map { Self.loads(after)[$0] ?? 0 }
            #expect(loads.max()! - loads.min()! <= 1)
        }
    }

    @Test("a member leaves: only its servers move, spread over the others")
    func leave() {
        for _ in 0..<200 {
            let members = Self.randomMembers(3)
            let leaving = members.first!
            let servers = Array(1...Int.random(in: 3...40))
            let before = FleetAssignment(servers: servers, members: members, currentOwners: [:])
            let after = FleetAssignment(
                servers: servers, members: members.subtracting([leaving]), currentOwners: before.owners)
            for server in servers where before.owners[server] != leaving {
                #expect(after.owners[server] == before.owners[server])
            }
            let loads = members.subtracting([leaving]).map { Self.loads(after)[$0] ?? 0 }
            #expect(loads.max()! - loads.min()! <= 1)
        }
    }

    @Test("servers owned by a member no longer live, or beyond its quota, are redistributed")
    func overloaded() {
        // Two members started together: the first took everything before it saw the second.
        let members: Set<Int> = [11, 22]
        let servers = Array(1...9)
        let greedy = Dictionary(uniqueKeysWithValues: servers.map { ($0, 11) })
        let plan = FleetAssignment(servers: servers, members: members, currentOwners: greedy)
        #expect(Self.loads(plan) == [11: 5, 22: 4], "the member that holds more keeps the odd one")
        #expect(plan.servers(of: 11).isSubset(of: Set(servers)))
        let orphaned = FleetAssignment(servers: servers, members: [22], currentOwners: greedy)
        #expect(orphaned.servers(of: 22) == Set(servers))
        #expect(FleetAssignment(servers: servers, members: [], currentOwners: [:]).owners.isEmpty)
    }

    @Test("the ranking is fixed: collectors of different builds agree")
    func fixedWeights() {
        #expect(FleetAssignment.weight(member: 1, server: 1) == 2_324_861_979_054_413_167)
        #expect(FleetAssignment.weight(member: 2_147_483_647, server: 42) == 4_183_448_903_417_958_964)
    }

    @Test("pg_locks rows: members, the leader, and servers owned by a member (not by another session)")
    func view() {
        let member = Int64(UInt32(bitPattern: FleetLocks.memberClass))
        let server = Int64(UInt32(bitPattern: FleetLocks.serverClass))
        let view = FleetView(rows: [
            (member, 0, 100), (member, 7, 100), (member, 9, 200), (server, 1, 100), (server, 2, 200), (server, 3, 300),
        ])
        #expect(view.members == [7: 100, 9: 200])
        #expect(view.leaderPID == 100)
        #expect(view.owners == [1: 7, 2: 9], "server 3's lock is held by no member's session")
    }

    @Test("members' messages: statuses split under the NOTIFY limit and read back; anything else ignored")
    func messages() {
        var statuses: [Int: WorkerStatus] = [:]
        for id in 1...3000 { statuses[id] = WorkerStatus.allCases[id % WorkerStatus.allCases.count] }
        let payloads = FleetMessage.statusPayloads(member: 2_000_000_000, statuses)
        #expect(payloads.count > 1)
        var read: [Int: WorkerStatus] = [:]
        for payload in payloads {
            #expect(payload.utf8.count <= FleetMessage.maximumBytes)
            guard case .statuses(let member, let part) = FleetMessage(payload: payload) else {
                Issue.record("unreadable: \(payload.prefix(40))")
                continue
            }
            #expect(member == 2_000_000_000)
            read.merge(part) { $1 }
        }
        #expect(read == statuses)
        #expect(FleetMessage.statusPayloads(member: 1, [:]).isEmpty)
        #expect(FleetMessage(payload: "T") == .tickNow)
        let relayed = FleetMessage.answerPayload(channel: "r_1", payload: "FORCE_SNAPSHOT OK Snapshot will begin shortly")
        #expect(
            FleetMessage(payload: relayed)
                == .answer(channel: "r_1", payload: "FORCE_SNAPSHOT OK Snapshot will begin shortly"))
        for garbage in ["", "S", "S x 1:0", "S 1 1:99", "S 1 a:b", "X 1 2", "R onlychannel", "S 1 1:0,,2"] {
            #expect(FleetMessage(payload: garbage) == nil, "\(garbage)")
        }
    }
}
