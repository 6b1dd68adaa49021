/// Who and when: what a spool file says of its snapshot.
struct SpoolHeader: Codable, Equatable {
    var version = 1
    var serverID: Int
    /// The server's address when it was read: a file lands only on the same server.
    var hostname: String
    var port: Int
    /// When it was taken (seconds since the epoch, this host's clock).
    var takenAt: Double
    /// The remote's `server_version_num`: which per-database sources apply.
    var serverVersionNumber: Int
    /// The server's `snapts` the worker had seen last when it read the snapshot: after a
    /// restart, another value in the repository means another collector landed snapshots
    /// meanwhile, and this one would land out of order.
    var baseMark: String?
}

/// What a section's rows are: a global source, by its function, or a per-database source of
/// PoWA 5, by its name, and the database it was read in. The SQL that stages it comes from the
/// repository when it lands, never from the file.
struct SpoolSection: Codable, Equatable {
    enum Kind: String, Codable { case source, module, catalog }
    var kind: Kind
    /// `query_source` of a global source; the module's or catalog's name.
    var name: String
    /// A global source's owner extension (`external` sources: their own).
    var module: String?
    var external: Bool?
    var database: String?
}

/// What a spool file says once its sections are written.
struct SpoolSummary: Codable, Equatable {
    /// The errors met reading it (what powa-web shows once it lands).
    var errors: [String]
    /// The statements whose texts were left out (known to the repository
    /// when it was read): one stored without a text when it lands rolls the landing back.
    var elidedStatements: [StatementKey] = []
}
