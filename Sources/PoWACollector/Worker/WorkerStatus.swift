/// A worker's state as powa-web shows it (the texts are the protocol's: powa-web shows green
/// only for `running`).
public enum WorkerStatus: String, Sendable, Hashable, CaseIterable {
    case running = "running"
    case noRemoteConnection = "no connection to remote server"
    case noRepositoryConnection = "no connection to repository server"
    /// The remote has no powa in its registered database: no snapshot until it has.
    case powaMissing = "powa not installed on remote server"
    /// The remote's powa is not of the repository's major.minor: no snapshot until it is.
    case incompatibleVersion = "incompatible PoWA version"
    case stopping = "stopping"
    case stopped = "stopped"
    /// No worker's: the server's `powa_servers` row cannot be used (why: its errors), listed
    /// so that powa-web and `status` show the server rather than leave it out. (Last: fleet
    /// messages carry a status by its index.)
    case unusableRow = "unusable powa_servers row"

    /// The statuses a worker can have (each a gauge of every server's metrics).
    static let ofWorkers = allCases.filter { $0 != .unusableRow }
}
