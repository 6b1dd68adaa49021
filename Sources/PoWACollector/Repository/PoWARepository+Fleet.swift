import PostgresClient

/// The repository as the fleet's meeting point, on a membership session: the advisory locks of
/// `FleetLocks` and the lease.
extension PoWARepository {
    /// Takes the membership `memberID` for this session unless a live session holds it.
    func tryMembership(_ memberID: Int, deadline: ContinuousClock.Instant?) async throws -> Bool {
        try await connection.query(FleetLocks.tryMember, ["\(memberID)"], deadline: deadline).rows.first?[0] == "t"
    }

    /// Takes the leadership for this session unless a live session holds it.
    func tryLeadership(deadline: ContinuousClock.Instant?) async throws -> Bool {
        try await connection.query(FleetLocks.tryMember, ["\(FleetLocks.leaderKey)"], deadline: deadline).rows.first?[0]
            == "t"
    }

    /// Has the repository end this session, and its locks with it, once it stayed silent for
    /// `lease` (`idle_session_timeout`: PostgreSQL 14 and later; before, SQLSTATE 42704).
    func endSession(afterSilence lease: Duration, deadline: ContinuousClock.Instant?) async throws {
        try await connection.execute("SET idle_session_timeout = '\(Int(lease.secondsValue * 1000))ms'", deadline: deadline)
    }

    /// The fleet as the repository's `pg_locks` shows it now.
    func fleetView(deadline: ContinuousClock.Instant?) async throws -> FleetView {
        let rows = try await connection.query(FleetLocks.viewQuery, deadline: deadline).rows
        return FleetView(
            rows: try rows.map {
                (try $0.decode(0, as: Int64.self), try $0.decode(1, as: Int64.self), Int32(try $0.decode(2, as: Int.self)))
            })
    }

    /// Tries the lock of each of `servers` for this session; returns those it got.
    func acquireServerLocks(_ servers: Set<Int>, deadline: ContinuousClock.Instant?) async throws -> Set<Int> {
        let rows = try await connection.query(
            FleetLocks.acquireServers, [PostgresArray.integers(servers)], deadline: deadline
        ).rows
        return Set(try rows.map { try $0.decode(0, as: Int.self) })
    }

    /// Drops this session's lock of each of `servers`.
    func releaseServerLocks(_ servers: Set<Int>, deadline: ContinuousClock.Instant?) async throws {
        _ = try await connection.query(FleetLocks.releaseServers, [PostgresArray.integers(servers)], deadline: deadline)
    }
}
