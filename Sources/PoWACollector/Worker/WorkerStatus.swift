/// A worker's state as powa-web shows it (the texts are the protocol's: powa-web shows green
/// only for `running`).
public enum WorkerStatus: String, Sendable, Hashable {
    case running = "running"
    case noRemoteConnection = "no connection to remote server"
    case noRepositoryConnection = "no connection to repository server"
    case stopping = "stopping"
    case stopped = "stopped"
}
