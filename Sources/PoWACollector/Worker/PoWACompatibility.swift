/// Whether a remote may be snapshotted into a repository: powa installed on the remote, 4.0 or
/// later, and of the repository's major.minor (as powa-web and the Python collector require).
/// Checked at every snapshot, so that installing or upgrading powa on the remote needs no
/// reload.
enum PoWACompatibility {
    /// Why a remote cannot be snapshotted, in the words powa-web shows.
    struct Refusal: Error, Equatable, CustomStringConvertible {
        let description: String
        /// The worker status that says so.
        let status: WorkerStatus
    }

    /// Nil when compatible; the refusal otherwise.
    static func check(remote: String?, repository: String?, database: String) -> Refusal? {
        guard let remote else {
            return Refusal(
                description: "the powa extension is not installed in database \"\(database)\" of the remote server"
                    + " (CREATE EXTENSION powa CASCADE there)",
                status: .powaMissing)
        }
        guard let remoteVersion = PoWAVersion(remote), remoteVersion >= .minimum else {
            return Refusal(
                description: "powa \(remote) on the remote server is too old: 4.0 or later is required",
                status: .incompatibleVersion)
        }
        if let repository, let repositoryVersion = PoWAVersion(repository),
            !repositoryVersion.isCompatible(with: remoteVersion)
        {
            return Refusal(
                description:
                    "Incompatible PoWA version between the repository server (\(repository)) and the remote host (\(remote))",
                status: .incompatibleVersion)
        }
        return nil
    }
}
