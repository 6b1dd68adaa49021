/// Which member of the fleet should snapshot each server: decided from what `pg_locks` shows
/// (the members and who owns what), the same way by every member, without talking.
///
/// Rendezvous (highest-random-weight) hashing ranks the members for each server, with loads
/// bounded so that the fleet stays even (each member gets ⌊N/M⌋ or ⌈N/M⌉ of the N servers):
/// 1. each member's quota: ⌊N/M⌋, plus one for the N mod M members that own the most now
///    (ties by member id), so that a balanced fleet stays as it is;
/// 2. each member keeps the servers it owns, best ranked first, up to its quota;
/// 3. every other server (new, unowned, beyond an owner's quota) goes, by server id, to the
///    best ranked member that still has room.
///
/// So a change of membership moves only what must move: a member that joins takes servers only
/// from members above their new quota, and the servers of a member that leaves go to the others
/// without moving anything else. The plan is a pure function of its inputs: the members agree
/// as soon as they see the same `pg_locks`.
struct FleetAssignment: Equatable {
    /// The owner each server should have.
    let owners: [Int: Int]

    init(servers: [Int], members: Set<Int>, currentOwners: [Int: Int]) {
        let servers = Array(Set(servers)).sorted()
        let members = members.sorted()
        guard !members.isEmpty else {
            owners = [:]
            return
        }
        var owned: [Int: [Int]] = [:]
        for server in servers {
            if let owner = currentOwners[server], members.contains(owner) { owned[owner, default: []].append(server) }
        }
        let base = servers.count / members.count
        let extra = servers.count % members.count
        let byLoad = members.sorted { (owned[$0]?.count ?? 0, -$0) > (owned[$1]?.count ?? 0, -$1) }
        var quota: [Int: Int] = [:]
        for (rank, member) in byLoad.enumerated() { quota[member] = base + (rank < extra ? 1 : 0) }

        var plan: [Int: Int] = [:]
        var load: [Int: Int] = [:]
        for member in members {
            let kept = (owned[member] ?? [])
                .sorted { Self.weight(member: member, server: $0) > Self.weight(member: member, server: $1) }
                .prefix(quota[member] ?? 0)
            for server in kept { plan[server] = member }
            load[member] = kept.count
        }
        for server in servers where plan[server] == nil {
            let ranked = members.sorted { Self.weight(member: $0, server: server) > Self.weight(member: $1, server: server) }
            if let member = ranked.first(where: { load[$0, default: 0] < quota[$0, default: 0] }) {
                plan[server] = member
                load[member, default: 0] += 1
            }
        }
        owners = plan
    }

    /// The servers `member` should own.
    func servers(of member: Int) -> Set<Int> {
        Set(owners.compactMap { $0.value == member ? $0.key : nil })
    }

    /// The rank of a member for a server: a fixed 64-bit mix (SplitMix64's finalizer) of both
    /// ids, the same in every build, so that collectors of different versions agree.
    static func weight(member: Int, server: Int) -> UInt64 {
        var z = (UInt64(truncatingIfNeeded: member) << 32) ^ UInt64(truncatingIfNeeded: server)
        z &+= 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
