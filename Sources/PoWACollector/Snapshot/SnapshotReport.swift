/// Every write of a worker to its server's `powa_snapshot_metas.errors` (what powa-web shows in
/// red), always under the fleet's ownership fence: a collector frozen or cut off meanwhile never
/// reports a failure on a server another collector now runs well.
struct SnapshotReport: Sendable {
    let serverID: Int
    /// The fleet whose fence the writes check (nil: no fleet, `powa-collector once`).
    let fleet: FleetMembership?

    /// Whether this collector may write for the server now, and under which fence (nil: no
    /// fleet, nothing to check).
    private var fence: (owned: Bool, member: Int32?) {
        guard let fleet else { return (true, nil) }
        guard let member = fleet.fence(serverID: serverID) else { return (false, nil) }
        return (true, member)
    }

    /// Appends `errors` (`once`: those not shown already), on a session of its own, unless this
    /// collector does not own the server now.
    func append(
        _ errors: [String], once: Bool = false, on repository: PoWARepository, deadline: ContinuousClock.Instant
    ) async throws {
        let fence = self.fence
        guard !errors.isEmpty, fence.owned else { return }
        try await repository.appendErrors(
            serverID: serverID, errors, owner: fence.member, once: once, deadline: deadline)
    }

    /// Replaces the errors with `errors` (a snapshot that cannot be taken at all, such as a
    /// refusal), unless this collector does not own the server now.
    func replace(_ errors: [String], on repository: PoWARepository, deadline: ContinuousClock.Instant) async throws {
        let fence = self.fence
        guard fence.owned else { return }
        try await repository.replaceErrors(serverID: serverID, errors, owner: fence.member, deadline: deadline)
    }

    /// Appends the errors a snapshot met, inside its transaction: they land with it, under the
    /// fence its commit checks last (`RemoteSnapshot`).
    func stage(_ errors: [String], in snapshot: PoWARepository, deadline: ContinuousClock.Instant) async throws {
        try await snapshot.appendErrors(serverID: serverID, errors, deadline: deadline)
    }
}
