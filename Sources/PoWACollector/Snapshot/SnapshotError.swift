import PostgresClient

/// Why a snapshot did not land, tagged where it happened: the side that failed (the remote
/// or the repository), the step it was at, and what it means for the worker. Model:
/// postgres-nio's `PostgresTransactionError`.
///
/// `description` is the words powa-web shows in `powa_snapshot_metas.errors`.
struct SnapshotError: Error, CustomStringConvertible {
    enum Side: Equatable, Sendable, CustomStringConvertible {
        case remote, repository

        var description: String {
            switch self {
            case .remote: "the remote server"
            case .repository: "the repository"
            }
        }
    }

    /// A step of the snapshot, in the words of its messages.
    enum Step: Equatable, Sendable, CustomStringConvertible {
        /// The transactions' BEGIN, and the statements known to the repository.
        case begin
        /// Reading a global source, or its staging.
        case source(String)
        /// The per-database modules and catalogs due, read from the repository.
        case databaseSources
        /// A per-database source of a database, or that database's session.
        case database(String, source: String?)
        /// The texts of statements the repository lacks.
        case statementTexts
        /// Locking the server's row, `powa_take_snapshot`, the errors, the fence, COMMIT.
        case commit

        var description: String {
            switch self {
            case .begin: "the snapshot's start"
            case .source(let name): name
            case .databaseSources: "the database sources"
            case .database(let database, let source?): "\(source) in database \(database)"
            case .database(let database, nil): "database \(database)"
            case .statementTexts: "the statements' texts"
            case .commit: "the snapshot's commit"
            }
        }
    }

    /// What the failure means for the worker.
    enum Kind {
        /// The remote session broke: the worker reconnects.
        case remoteLost
        /// The repository failed (connection, statement, commit).
        case repositoryFailed
        /// A step that must succeed failed on the remote, its session intact.
        case remoteFailed
        /// The snapshot timeout passed.
        case timedOut
        /// The remote sent nothing for that long and the suspects' lane had no room: given
        /// up, so that it holds no slot the others need.
        case remoteSilent(Duration)
        /// The task was cancelled (shutdown, worker stopped).
        case cancelled
        /// Rolled back on purpose (see `Superseded`).
        case superseded(Superseded)
        /// A spooled snapshot's file turned out unreadable while it landed: rolled back.
        case spoolDamaged
    }

    let kind: Kind
    let side: Side?
    let step: Step
    let underlying: (any Error)?

    init(_ kind: Kind, side: Side? = nil, step: Step, underlying: (any Error)? = nil) {
        self.kind = kind
        self.side = side
        self.step = step
        self.underlying = underlying
    }

    var description: String {
        let cause = underlying.map { ": \($0)" } ?? ""
        switch kind {
        case .remoteLost: return "lost the connection to the remote server\(cause)"
        case .repositoryFailed: return "repository error\(cause)"
        case .remoteFailed: return "\(step) failed on the remote server\(cause)"
        case .timedOut: return "snapshot timed out while reading \(step)"
        case .remoteSilent(let after):
            return
                "the remote server sent nothing for \(after.secondsValue) s while reading \(step), and the repository's snapshot slots were needed by other servers: given up"
        case .cancelled: return "snapshot interrupted"
        case .superseded(let reason): return "snapshot rolled back: \(reason)"
        case .spoolDamaged: return "spool file damaged\(cause)"
        }
    }

    /// What an error met at `step` means for the snapshot, by the side it came from (a COPY
    /// pipe's error says which of its two sides failed): nil when only that step failed (a
    /// source, a database: reported, and the snapshot goes on).
    ///
    /// `remoteInTransaction`: whether the remote session must still be able to go on with its
    /// transaction (false for a step run outside one, where only a broken session is lost).
    static func classify(
        _ error: any Error, side: Side, step: Step, remote: PostgresConnection?, remoteInTransaction: Bool = true,
        repository: PostgresConnection?, deadline: ContinuousClock.Instant, silence: SilenceWatch?
    ) -> SnapshotError? {
        if let tagged = error as? SnapshotError { return tagged }
        var side = side
        var error = error
        if let pipe = error as? CopyPipeError {
            // Read from the remote, written into the repository.
            side = pipe.side == .source ? .remote : .repository
            error = pipe.underlying
        }
        if error is CancellationError || Task.isCancelled { return SnapshotError(.cancelled, step: step) }
        if side == .remote, let silence, silence.gaveUp {
            return SnapshotError(.remoteSilent(silence.limit), side: .remote, step: step)
        }
        if PostgresError.Code.timedOut ~= error || ContinuousClock.now >= deadline {
            return SnapshotError(.timedOut, side: side, step: step, underlying: error)
        }
        switch side {
        case .repository:
            guard repository?.canContinueTransaction ?? true else {
                return SnapshotError(.repositoryFailed, side: .repository, step: step, underlying: error)
            }
        case .remote:
            if let remote, !(remoteInTransaction ? remote.canContinueTransaction : remote.isHealthy) {
                return SnapshotError(.remoteLost, side: .remote, step: step, underlying: error)
            }
            // A failed source also ended its COPY into the repository: a repository that cannot
            // take that is the snapshot's end.
            guard repository?.canContinueTransaction ?? true else {
                return SnapshotError(.repositoryFailed, side: .repository, step: step, underlying: error)
            }
        }
        return nil
    }
}

/// Why a snapshot was rolled back as if it had never been tried: nothing is reported to
/// powa-web, the worker goes on (several collectors share the repository, or a snapshot was
/// taken by someone else).
enum Superseded: Equatable, CustomStringConvertible {
    /// Another transaction is snapshotting the server right now.
    case rowBusy
    /// A snapshot landed since this worker's last one: the schedule follows it.
    case landedElsewhere(SnapshotMark, secondsAgo: Double?)
    /// This collector no longer owns the server.
    case notOwned

    var description: String {
        switch self {
        case .rowBusy: "another snapshot of the server is being committed"
        case .landedElsewhere: "another snapshot of the server landed meanwhile"
        case .notOwned: "this collector no longer owns the server"
        }
    }
}

/// Why a snapshot that would have stored an empty text was rolled back.
struct StatementTextsLost: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
