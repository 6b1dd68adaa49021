import PostgresClient

/// Where a snapshot's rows go as they are read from the remote: the repository's staging
/// tables, inside the snapshot's transaction, or a spool file while the repository cannot take
/// them (`SnapshotSpool`).
enum SnapshotDestination {
    case repository(PoWARepository)
    case spool(SpoolWriter)

    /// The repository's session, when the rows go there.
    var connection: PostgresConnection? {
        if case .repository(let repository) = self { return repository.connection }
        return nil
    }
}
