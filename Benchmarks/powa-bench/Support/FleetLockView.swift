import PostgresClient

/// A fleet of collectors on a run's repository as `pg_locks` shows it, read the way the README
/// tells a DBA to: the session-level advisory locks of the two-`int4` form (`objsubid = 2`),
/// classid 1886353249 for the leader (objid 0) and each member (objid = its member id),
/// 1886353250 for each server (objid = its srvid), all held on the members' control sessions.
struct FleetLockView: Sendable {
    /// Live members: member id → the pid of its membership session.
    var members: [Int: Int] = [:]
    /// The member holding the leader lock.
    var leader: Int?
    /// Owned servers: srvid → member id.
    var owners: [Int: Int] = [:]
    /// The repository's clock at the reading (epoch seconds).
    var clock = 0.0

    static let memberClass = 1_886_353_249
    static let serverClass = 1_886_353_250

    /// One reading, on `connection` (to the run's database).
    static func read(_ connection: PostgresConnection) async throws -> FleetLockView {
        let rows = try await connection.query(
            """
            SELECT classid::int8, objid::int8, pid, extract(epoch FROM clock_timestamp())::float8 FROM pg_catalog.pg_locks
            WHERE locktype = 'advisory' AND objsubid = 2 AND granted AND classid IN (\(memberClass), \(serverClass))
              AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
            UNION ALL SELECT NULL, NULL, NULL, extract(epoch FROM clock_timestamp())::float8
            """
        ).rows
        var view = FleetLockView()
        var leaderPID: Int?
        var serverPIDs: [Int: Int] = [:]
        for row in rows {
            guard let classID = try row.decodeIfPresent(0, as: Int.self) else {
                view.clock = try row.decode(3, as: Double.self)
                continue
            }
            let objectID = try row.decode(1, as: Int.self)
            let pid = try row.decode(2, as: Int.self)
            if classID == memberClass {
                if objectID == 0 { leaderPID = pid } else { view.members[objectID] = pid }
            } else {
                serverPIDs[objectID] = pid
            }
        }
        let memberOfPID = Dictionary(view.members.map { ($0.value, $0.key) }, uniquingKeysWith: { first, _ in first })
        view.leader = leaderPID.flatMap { memberOfPID[$0] }
        for (server, pid) in serverPIDs { view.owners[server] = memberOfPID[pid] }
        return view
    }

    /// How many servers `member` owns.
    func serverCount(of member: Int) -> Int { owners.values.filter { $0 == member }.count }
}
