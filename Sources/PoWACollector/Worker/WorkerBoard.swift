import Synchronization

/// What the daemon knows of its workers, for the control channel: each worker's status,
/// whether a snapshot is running or requested, and when the last one started.
///
/// Workers write their own entry; the control channel reads it and posts requests.
public final class WorkerBoard: Sendable {
    /// One worker's entry.
    struct Entry {
        var status: WorkerStatus
        var snapshotRunning = false
        var lastSnapshotStart: ContinuousClock.Instant?
        /// PoWA 5: a REFRESH_DB_CAT waiting for the next snapshot.
        var catalogRefresh: CatalogRefresh?
        let mailbox: WorkerMailbox
    }

    /// Why a FORCE_SNAPSHOT was refused.
    public enum ForceRefusal: Error, Equatable, Sendable {
        case unknownServer, snapshotRunning, alreadyRequested, tooSoon(seconds: Int)
        /// The worker cannot take a snapshot now (no connection, incompatible remote...).
        case notRunning(WorkerStatus)
    }

    private let entries = Mutex<[Int: Entry]>([:])

    public init() {}

    /// A new worker's entry; one replacing a restarted worker keeps what the old one had not
    /// done yet (a pending catalog refresh) and when its last snapshot started.
    func register(serverID: Int, mailbox: WorkerMailbox) {
        entries.withLock { entries in
            let previous = entries[serverID]
            entries[serverID] = Entry(
                status: .stopped, lastSnapshotStart: previous?.lastSnapshotStart,
                catalogRefresh: previous?.catalogRefresh, mailbox: mailbox)
        }
    }

    func remove(serverID: Int) {
        _ = entries.withLock { $0.removeValue(forKey: serverID) }
    }

    func setStatus(_ status: WorkerStatus, serverID: Int) {
        entries.withLock { $0[serverID]?.status = status }
    }

    func snapshotStarted(serverID: Int, at instant: ContinuousClock.Instant) {
        entries.withLock { entries in
            entries[serverID]?.snapshotRunning = true
            entries[serverID]?.lastSnapshotStart = instant
        }
    }

    func snapshotEnded(serverID: Int) {
        entries.withLock { $0[serverID]?.snapshotRunning = false }
    }

    /// Whether the worker of a server is taking a snapshot now.
    func isSnapshotRunning(serverID: Int) -> Bool {
        entries.withLock { $0[serverID]?.snapshotRunning ?? false }
    }

    /// The status of every worker, or of one (empty when unknown).
    public func statuses(serverID: Int? = nil) -> [Int: WorkerStatus] {
        entries.withLock { entries in
            var result: [Int: WorkerStatus] = [:]
            for (id, entry) in entries where serverID == nil || serverID == id { result[id] = entry.status }
            return result
        }
    }

    /// Asks a worker for a snapshot now, unless one is running, already requested, or the last
    /// one started less than 10 seconds ago.
    public func forceSnapshot(serverID: Int, now: ContinuousClock.Instant = .now) throws(ForceRefusal) {
        let mailbox = try entries.withLock { entries throws(ForceRefusal) -> WorkerMailbox in
            guard let entry = entries[serverID] else { throw .unknownServer }
            guard !entry.snapshotRunning else { throw .snapshotRunning }
            guard entry.status == .running else { throw .notRunning(entry.status) }
            guard !entry.mailbox.isPending(.forceSnapshot) else { throw .alreadyRequested }
            if let last = entry.lastSnapshotStart, now - last < .seconds(10) {
                throw .tooSoon(seconds: Int((now - last).components.seconds))
            }
            return entry.mailbox
        }
        mailbox.post(.forceSnapshot)
    }

    /// PoWA 5: asks for the catalogs of a server's databases at its next snapshot (merged with
    /// a request still pending). Returns false for an unknown server.
    public func requestCatalogRefresh(_ refresh: CatalogRefresh, serverID: Int) -> Bool {
        entries.withLock { entries in
            guard let entry = entries[serverID] else { return false }
            entries[serverID]?.catalogRefresh = refresh.merged(with: entry.catalogRefresh)
            return true
        }
    }

    /// The pending catalog refresh of a server, taken for the snapshot about to start; give it
    /// back with `requestCatalogRefresh` if that snapshot does not land.
    func takeCatalogRefresh(serverID: Int) -> CatalogRefresh? {
        entries.withLock { entries in
            defer { entries[serverID]?.catalogRefresh = nil }
            return entries[serverID]?.catalogRefresh
        }
    }

    /// Asks a worker to re-check the versions of its server.
    func recheckVersions(serverID: Int) {
        entries.withLock { $0[serverID]?.mailbox }?.post(.recheckVersions)
    }
}
