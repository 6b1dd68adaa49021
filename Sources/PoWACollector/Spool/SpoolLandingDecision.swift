import PostgresClient

/// What a worker does when a spooled snapshot did not land: pure, so that every case is
/// unit-tested.
enum SpoolLandingDecision: Equatable {
    /// Kept for the next attempt; the repository cannot take snapshots now: the live one is
    /// spooled too (the server's snapshots land in order).
    case keepAndSpool
    /// Dropped for this reason, and the next file is tried.
    case drop(SnapshotSpool.DropReason)
    /// This file and every later one of the server are dropped: they would land out of order
    /// after snapshots another collector landed.
    case dropRest
    /// Kept; the snapshot ends here (rolled back on purpose, or the worker stops).
    case stop

    /// How a landing failed, as far as the decision goes.
    enum Failure: Equatable {
        /// No repository session could be had, or it broke, or the repository says it cannot
        /// work now (`RepositoryOutage`).
        case outage
        /// The file is not a whole spool file.
        case damaged
        /// Another collector's snapshot landed since this spool's base.
        case landedElsewhere
        /// Rolled back on purpose (another snapshot commits, the server changes hands).
        case superseded
        case cancelled
        /// Anything else, the repository answering: the repository refused it, or it ran out
        /// of time, or the file could not be read.
        case refused
    }

    /// How many times a file may fail so before it is dropped.
    static let attempts = 3

    /// `attempts`: the times this file failed so, this one included.
    static func after(_ failure: Failure, attempts: Int) -> SpoolLandingDecision {
        switch failure {
        case .outage: .keepAndSpool
        case .damaged: .drop(.damaged)
        case .landedElsewhere: .dropRest
        case .superseded, .cancelled: .stop
        case .refused: attempts >= Self.attempts ? .drop(.refused) : .keepAndSpool
        }
    }
}

/// The repository's errors that say it cannot work now, rather than that it refuses what it
/// was given: connection lost (08), insufficient resources such as a full disk (53), shut down
/// or restarting (57P), a system error (58), read-only after a failover (25006), a lock held
/// (55P03: a `VACUUM FULL` of a PoWA table), a cancel (57014), a serialization failure or a
/// deadlock (40).
enum RepositoryOutage {
    static func matches(_ error: (any Error)?) -> Bool {
        guard let state = (error as? PostgresError)?.sqlState else { return false }
        return ["08", "53", "57P", "58", "40"].contains { state.hasPrefix($0) }
            || ["25006", "55P03", "57014"].contains(state)
    }
}
