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
        let mailbox: WorkerMailbox
    }

    /// Why a FORCE_SNAPSHOT was refused.
    public enum ForceRefusal: Error, Equatable, Sendable {
        case unknownServer, snapshotRunning, alreadyRequested, tooSoon(seconds: Int)
    }

    private let entries = Mutex<[Int: Entry]>([:])

    public init() {}

    func register(serverID: Int, mailbox: WorkerMailbox) {
        entries.withLock { $0[serverID] = Entry(status: .stopped, mailbox: mailbox) }
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
            guard !entry.mailbox.isPending(.forceSnapshot) else { throw .alreadyRequested }
            if let last = entry.lastSnapshotStart, now - last < .seconds(10) {
                throw .tooSoon(seconds: Int((now - last).components.seconds))
            }
            return entry.mailbox
        }
        mailbox.post(.forceSnapshot)
    }

    /// Asks a worker to re-check the versions of its server.
    func recheckVersions(serverID: Int) {
        entries.withLock { $0[serverID]?.mailbox }?.post(.recheckVersions)
    }
}
