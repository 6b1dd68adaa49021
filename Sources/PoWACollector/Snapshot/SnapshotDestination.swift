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

/// The spool file could not be written (a full disk, say): the snapshot is lost.
struct SpoolWriteError: Error, CustomStringConvertible {
    let underlying: any Error
    init(_ underlying: any Error) { self.underlying = underlying }
    var description: String { "could not write the spool file: \(underlying)" }
}

/// What reading a snapshot into the spool needs of the repository, which cannot be asked
/// then: what it said at the server's last snapshot that landed.
struct SpoolBasis {
    var sources: [SnapshotSource]
    /// PoWA 5: the databases are read too, with these per-database modules and catalogs.
    var isPoWA5: Bool
    var databaseSources: DatabaseSources?
}

/// PoWA 5's per-database sources of a snapshot: the modules read in every database, and the
/// catalogs due.
struct DatabaseSources {
    var modules: [DatabaseSource]
    var catalogs: [DatabaseSource]
}
