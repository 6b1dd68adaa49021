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
