/// The fleet as `pg_locks` shows it at one instant.
struct FleetView: Equatable, Sendable {
    /// Live members: member id → the pid of its membership session.
    var members: [Int: Int32] = [:]
    /// The session holding the leader lock, if any.
    var leaderPID: Int32?
    /// Owned servers: server id → owning member id (a lock whose holder is no member, such as
    /// a membership being taken, counts as nobody's).
    var owners: [Int: Int] = [:]

    init(members: [Int: Int32] = [:], leaderPID: Int32? = nil, owners: [Int: Int] = [:]) {
        self.members = members
        self.leaderPID = leaderPID
        self.owners = owners
    }

    /// From the rows of `FleetLocks.viewQuery`.
    init(rows: [(classID: Int64, objectID: Int64, pid: Int32)]) {
        var serverHolders: [Int: Int32] = [:]
        for row in rows {
            if row.classID == Int64(UInt32(bitPattern: FleetLocks.memberClass)) {
                if row.objectID == Int64(FleetLocks.leaderKey) {
                    leaderPID = row.pid
                } else {
                    members[Int(row.objectID)] = row.pid
                }
            } else if row.classID == Int64(UInt32(bitPattern: FleetLocks.serverClass)) {
                serverHolders[Int(row.objectID)] = row.pid
            }
        }
        var memberOfPID: [Int32: Int] = [:]
        for (member, pid) in members { memberOfPID[pid] = member }
        for (server, pid) in serverHolders {
            if let member = memberOfPID[pid] { owners[server] = member }
        }
    }
}
