/// The advisory locks several collectors on one repository coordinate with, and the SQL that
/// takes, drops and reads them.
///
/// Every lock is a session-level lock of the two-`int4` form, held on a collector's membership
/// session (its control channel), in the repository database. In `pg_locks` they are the rows
/// `locktype = 'advisory'`, `objsubid = 2`, `classid` = the first key, `objid` = the second:
///
/// | classid | objid | held by |
/// | --- | --- | --- |
/// | 1886353249 (`powa`, 0x706F7761) | 0 | the leader, which answers powa-web |
/// | 1886353249 | a member id (1...2147483647, drawn when the process starts) | each live collector |
/// | 1886353250 (0x706F7762) | a server id of `powa_servers` | the collector that snapshots it |
///
/// powa itself takes no advisory lock (its snapshots serialize on a `FOR UPDATE NOWAIT` of the
/// `powa_snapshot_metas` row), and the one-`bigint` form that applications use most lives in
/// another part of the key space (`objsubid = 1`): these keys collide with neither.
enum FleetLocks {
    /// The first key of the membership and leader locks.
    static let memberClass: Int32 = 0x706F_7761
    /// The first key of the server locks.
    static let serverClass: Int32 = 0x706F_7762
    /// The second key of the leader lock (member ids start at 1).
    static let leaderKey: Int32 = 0

    /// The rows of our two classes in `pg_locks`: class, second key, holder's pid.
    static let viewQuery = """
        SELECT classid::int8, objid::int8, pid FROM pg_catalog.pg_locks
        WHERE locktype = 'advisory' AND objsubid = 2 AND granted
          AND classid IN (\(UInt32(bitPattern: memberClass)), \(UInt32(bitPattern: serverClass)))
          AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
        """

    /// Tries the lock of each server of `$1` (an `int4[]`); returns those it got.
    static let acquireServers = """
        SELECT s FROM pg_catalog.unnest($1::int4[]) AS s
        WHERE pg_catalog.pg_try_advisory_lock(\(serverClass), s)
        """

    /// Drops the lock of each server of `$1`.
    static let releaseServers = """
        SELECT pg_catalog.pg_advisory_unlock(\(serverClass), s) FROM pg_catalog.unnest($1::int4[]) AS s
        """

    /// Tries a membership (or, with `leaderKey`, the leadership): `$1` is the second key.
    static let tryMember = "SELECT pg_catalog.pg_try_advisory_lock(\(memberClass), $1::int4)"

    /// Whether, in the repository as this transaction sees it now, the session `member` (a
    /// parameter) holds the lock of server `server` (a parameter): the fence a snapshot passes
    /// just before it commits.
    static func ownsServer(server: String = "$2", member: String = "$3") -> String {
        """
        EXISTS (SELECT 1 FROM pg_catalog.pg_locks
                WHERE locktype = 'advisory' AND objsubid = 2 AND granted
                  AND classid = \(UInt32(bitPattern: serverClass)) AND objid = \(server)::int8::oid
                  AND pid = \(member)::int4
                  AND database = (SELECT oid FROM pg_catalog.pg_database
                                  WHERE datname = pg_catalog.current_database()))
        """
    }
}
