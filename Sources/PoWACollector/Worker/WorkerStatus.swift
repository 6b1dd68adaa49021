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
}
