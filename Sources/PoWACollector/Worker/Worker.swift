import Logging
import PostgresClient

/// What every worker shares: settings, the repository's address, the snapshot limiter and
/// the board the control channel reads.
struct WorkerContext: Sendable {
    var configuration: CollectorConfiguration
    let limiter: SnapshotLimiter
    let pool: RepositoryPool
    let board: WorkerBoard
    var logger: Logger
    /// Where snapshots are counted (nil: no HTTP endpoint, nothing counted).
    var metrics: CollectorMetrics? = nil
    /// Which servers this collector may snapshot now, and the fence its snapshots check
    /// (nil: no fleet, `powa-collector once`).
    var fleet: FleetMembership? = nil

    var connectTimeout: Duration { .seconds(configuration.connectTimeout) }
    var snapshotTimeout: Duration { .seconds(configuration.snapshotTimeout) }
}

/// The worker of one remote server: keeps a persistent session to it (reconnecting with
/// backoff), records its versions, and takes its snapshots on a drift-free schedule until its
/// task is cancelled. It never stops on its own: a remote without powa, of another powa
/// version, or without a `powa_snapshot_metas` row is reported and checked again at each
/// period, so that fixing it needs no restart.
struct Worker {
    let server: RemoteServer
    let context: WorkerContext
    let mailbox: WorkerMailbox
    let name: String
    let logger: Logger
    /// Outages, each logged once (see `OutageLog`).
    private let remoteOutage = OutageLog(subject: "the remote server")
    private let repositoryOutage = OutageLog(subject: "the repository")
    private let preparationOutage = OutageLog(subject: "the server's bookkeeping")

    init(server: RemoteServer, context: WorkerContext, mailbox: WorkerMailbox) {
        self.server = server
        self.context = context
        self.mailbox = mailbox
        name = server.name(useAlias: context.configuration.useServerAlias)
        var logger = context.logger
        logger[metadataKey: "worker"] = "\(name)"
        self.logger = logger
    }

    private var board: WorkerBoard { context.board }

    private func setStatus(_ status: WorkerStatus) {
        board.setStatus(status, serverID: server.id)
        context.metrics?.workerStatusChanged(server, to: status)
    }

    /// Runs until the task is cancelled.
    func run() async {
        logger.info("worker started", metadata: ["frequency": "\(server.frequency)"])
        var remote: PoWASession?
        var schedule: SnapshotSchedule?
        var backoff = Backoff()
        var needsBookkeeping = true
        /// The statements whose texts the repository has (`skip_known_query_texts`).
        let knownStatements = context.configuration.skipKnownQueryTexts ? KnownStatements() : nil
        var refusal: PoWACompatibility.Refusal?
        /// The slot of the schedule whose snapshot was already retried on a new session.
        var retriedSlot: Int?
        /// The last snapshot ran out of time: the next one waits in the suspects' lane.
        var suspect = false
        /// The server's `snapts` as this worker last saw it (another: a snapshot landed
        /// elsewhere since, and the schedule follows it).
        var mark: SnapshotMark?
        /// When the last snapshot that landed began (its slot taken, so about its `snapts`): a
        /// scheduled one never begins within half a period of it, so that a late snapshot and the on-time one after it never land in
        /// the same instant (powa-web would compute rates over milliseconds).
        var lastLanded: ContinuousClock.Instant?
        setStatus(.noRemoteConnection)
        defer {
            remote?.close()
            setStatus(.stopped)
            logger.info("worker stopped")
        }

        while !Task.isCancelled {
            // The persistent remote session.
            if remote.map({ !$0.connection.probe() }) ?? true {
                remote?.close()
                remote = nil
                do {
                    remote = try await connectRemote()
                    backoff.reset()
                    needsBookkeeping = true
                    knownStatements?.forget()
                    remoteOutage.ended(logger)
                } catch {
                    if Task.isCancelled { return }
                    setStatus(.noRemoteConnection)
                    let message = "could not connect to the remote server: \(error)"
                    if remoteOutage.began(message, logger) {
                        _ = try? await context.limiter.withPermit { await recordErrors([message]) }
                    }
                    // A mailbox request (FORCE_SNAPSHOT, a reload) never shortens the backoff.
                    await pause(backoff.next())
                    continue
                }
            }
            guard let session = remote else { continue }

            // Versions and the first schedule, from the repository.
            if needsBookkeeping || schedule == nil {
                // Start-up work uses a repository connection too: bounded like snapshots, so
                // that a thousand workers starting together do not exhaust max_connections.
                let preparation = try? await context.limiter.withPermit {
                    await prepare(remote: session.connection)
                }
                switch preparation ?? .retry(nil) {
                case .ready(let start, let lastMark):
                    preparationOutage.ended(logger)
                    needsBookkeeping = false
                    if schedule == nil { mark = lastMark }
                    schedule = schedule ?? start
                    backoff.reset()
                    if refusal == nil { setStatus(.running) }
                case .retry(let problem):
                    if let problem { preparationOutage.began(problem, logger) }
                    await pause(backoff.next())
                    continue
                }
            }
            guard var current = schedule else { continue }

            let spaced = lastLanded.map { $0 + current.frequency / 2 } ?? current.nextDue
            await mailbox.wait(until: max(current.nextDue, spaced))
            if Task.isCancelled { return }
            let requests = mailbox.take()
            // Its server went to another collector: the snapshot it may have been taking is over.
            if requests.contains(.retire) { return }
            if requests.contains(.recheckVersions) {
                needsBookkeeping = true
                knownStatements?.forget()
            }
            let now = ContinuousClock.now
            let due = now >= current.nextDue && now >= spaced
            guard due || requests.contains(.forceSnapshot) else { continue }
            if due {
                current.skipMissed(now: now)
                schedule = current
            }
            // A remote that restarted since the last snapshot ended this session: a new one,
            // then this snapshot (still due), rather than a snapshot failing on the dead one.
            guard session.connection.probe() else {
                if requests.contains(.forceSnapshot) { mailbox.post(.forceSnapshot) }
                continue
            }

            // The fleet: only while this collector owns the server (its lock may be on its way
            // to another member, or the membership session is being restored).
            var fence: Int32?
            if let fleet = context.fleet {
                fence = fleet.fence(serverID: server.id)
                if fence == nil {
                    if !fleet.isMember { setStatus(.noRepositoryConnection) }
                    if requests.contains(.forceSnapshot) { mailbox.post(.forceSnapshot) }
                    logger.debug("snapshot held back: this collector does not own the server now")
                    await mailbox.wait(until: .now + .seconds(1))
                    continue
                }
            }

            let started = ContinuousClock.now
            let result = await takeSnapshot(
                remote: session, suspect: suspect, knownStatements: knownStatements, fence: fence, mark: mark)
            if let metrics = context.metrics {
                let outcome: CollectorMetrics.Outcome? =
                    switch result {
                    case .landed: .success
                    case .timedOut: .timedOut
                    case .failed, .remoteLost, .refused: .failed
                    case .reopen, .superseded: nil
                    }
                if let outcome { metrics.snapshotEnded(server, outcome: outcome, duration: .now - started) }
            }
            switch result {
            case .landed: suspect = false
            case .timedOut: suspect = true
            default: break
            }
            switch result {
            case .landed(let landedMark, let began):
                mark = landedMark ?? mark
                lastLanded = began
                if let previous = refusal {
                    logger.info("the remote server can be snapshotted again", metadata: ["was": "\(previous.description)"])
                    refusal = nil
                }
            case .failed, .timedOut:
                break
            case .refused(let reason):
                if refusal != reason {
                    logger.error("snapshot refused: \(reason.description)")
                } else {
                    logger.debug("snapshot refused: \(reason.description)")
                }
                refusal = reason
            case .remoteLost:
                session.close()
                remote = nil
                // Once per slot: a new session and the same snapshot, rather than a lost period
                // (a session the remote ended just now may pass the probe).
                if due, retriedSlot != current.index {
                    retriedSlot = current.index
                    continue
                }
            case .reopen:
                // The remote's powa changed under the session: a fresh session, then the snapshot.
                session.close()
                remote = nil
                continue
            case .superseded(.landedElsewhere(let newMark, let secondsAgo)):
                // Taken by another collector (the previous owner's last one, committed late):
                // this one keeps its phase.
                logger.info("snapshot left to the one that landed meanwhile")
                mark = newMark
                schedule = SnapshotSchedule.starting(
                    frequency: current.frequency, lastSnapshot: secondsAgo.map { .secondsAgo($0) } ?? .never, now: .now)
                continue
            case .superseded(let reason):
                // Another snapshot commits now, or the server is changing hands: the same slot
                // in a moment, if this collector still owns the server then.
                logger.info("snapshot rolled back: \(reason)")
                if requests.contains(.forceSnapshot) { mailbox.post(.forceSnapshot) }
                await mailbox.wait(until: .now + .seconds(1))
                continue
            }
            if due {
                current.advance(now: .now)
                schedule = current
            }
        }
    }

    /// `powa-collector once`: one snapshot taken as `run` takes it (session, bookkeeping,
    /// compatibility, sources, repair of texts, errors recorded for powa-web), then the session
    /// is closed. Returns nil when it landed, else why not.
    func snapshotOnce() async -> String? {
        let session: PoWASession
        do {
            session = try await connectRemote()
        } catch {
            let message = "could not connect to the remote server: \(error)"
            logger.error("\(message)")
            _ = try? await context.limiter.withPermit { await recordErrors([message]) }
            return message
        }
        defer { session.close() }
        let preparation = try? await context.limiter.withPermit { await prepare(remote: session.connection) }
        if case .retry(let problem) = preparation ?? .retry(nil) {
            let message = problem ?? "could not reach the repository"
            logger.error("\(message)")
            return message
        }
        let knownStatements = context.configuration.skipKnownQueryTexts ? KnownStatements() : nil
        switch await takeSnapshot(remote: session, suspect: false, knownStatements: knownStatements, fence: nil, mark: nil) {
        case .landed: return nil
        case .failed(let reason), .remoteLost(let reason), .timedOut(let reason): return reason
        case .refused(let refusal): return refusal.description
        case .reopen: return "the remote server's powa changed during the snapshot: run it again"
        case .superseded(let reason): return "\(reason)"
        }
    }

    /// Waits, whatever arrives in the mailbox, until `delay` has passed or the task is cancelled.
    private func pause(_ delay: Duration) async {
        try? await Task.sleep(for: delay)
    }

    // MARK: Sessions

    /// The configuration's extra libpq keywords for this server (`servers`).
    private var connectionOptions: [ConnectionConfiguration.Parameter] {
        context.configuration.serverOptions.options(for: server)
    }

    private func connectRemote() async throws -> PoWASession {
        let session = try await PoWASession.remote(
            server, applicationName: ApplicationName.worker(name), connectTimeout: context.connectTimeout,
            options: connectionOptions, logger: logger)
        logger.debug("connected to the remote server", metadata: ["pid": "\(session.connection.backendPID)"])
        return session
    }

    /// Lends `body` a pooled repository session; when none can be had, sets the status, logs
    /// what could not happen (`consequence`), and returns nil.
    private func withRepository<T>(failing consequence: String, _ body: (PoWARepository) async -> T) async -> T? {
        do {
            return try await context.pool.withRepository(
                RepositoryEndpoint(context.configuration, applicationName: ApplicationName.workerRepository(name)),
                logger: logger
            ) { repository in
                repositoryOutage.ended(logger)
                return await body(repository)
            }
        } catch {
            if !Task.isCancelled {
                setStatus(.noRepositoryConnection)
                repositoryOutage.began("\(consequence): could not connect to the repository: \(error)", logger)
            }
            return nil
        }
    }

    /// Appends errors to the server's `powa_snapshot_metas.errors`, on a pooled session, unless
    /// they are shown already, and (in a fleet) only while this collector owns the server;
    /// when the repository cannot be reached they are only logged (they were already). The
    /// caller holds a limiter permit.
    private func recordErrors(_ errors: [String]) async {
        guard !errors.isEmpty, !Task.isCancelled else { return }
        var owner: Int32?
        if let fleet = context.fleet {
            guard let fence = fleet.fence(serverID: server.id) else { return }
            owner = fence
        }
        _ = await withRepository(failing: "error not recorded") { repository in
            do {
                try await repository.appendErrors(
                    serverID: server.id, errors, owner: owner, once: true, deadline: .now + context.connectTimeout)
            } catch {
                logger.warning("could not record the error in the repository: \(error)")
            }
        }
    }

    // MARK: Start-up bookkeeping

    private enum Preparation {
        /// The first schedule, and the server's `snapts` it follows.
        case ready(SnapshotSchedule, SnapshotMark?)
        /// Try again after a backoff; the problem, if any, is for the log (once per outage).
        case retry(String?)
    }

    private func prepare(remote: PostgresConnection) async -> Preparation {
        let deadline = ContinuousClock.now + context.snapshotTimeout
        return await withRepository(failing: "worker start-up delayed") { repository -> Preparation in
            do {
                try await repository.recordVersions(
                    try await RemoteVersions.read(remote, deadline: deadline), serverID: server.id, deadline: deadline)
                let (last, mark) = try await repository.lastSnapshot(serverID: server.id, deadline: deadline)
                if last == .missing {
                    setStatus(.stopped)
                    return .retry(
                        "server \(server.id) has no row in powa_snapshot_metas: register it with powa_register_server()")
                }
                let frequency = Duration.seconds(server.frequency)
                return .ready(SnapshotSchedule.starting(frequency: frequency, lastSnapshot: last, now: .now), mark)
            } catch {
                if Task.isCancelled { return .retry(nil) }
                setStatus(remote.isHealthy ? .noRepositoryConnection : .noRemoteConnection)
                return .retry("could not record the server's versions: \(error)")
            }
        } ?? .retry(nil)
    }

    // MARK: Snapshots

    /// How a snapshot ended; a failure says why, in the words the log uses.
    private enum SnapshotResult: Equatable {
        /// With the server's `snapts` it set, and when it began (its slot taken).
        case landed(SnapshotMark?, began: ContinuousClock.Instant)
        case failed(String)
        case remoteLost(String)
        /// Ran out of time (`snapshot_timeout`), reported like a failure.
        case timedOut(String)
        /// The remote may not be snapshotted (reported in `powa_snapshot_metas.errors`).
        case refused(PoWACompatibility.Refusal)
        /// The remote session no longer matches the remote's powa: open a new one.
        case reopen
        /// Rolled back on purpose, reported nowhere (see `RemoteSnapshot.Superseded`).
        case superseded(RemoteSnapshot.Superseded)
    }

    private func takeSnapshot(
        remote: PoWASession, suspect: Bool, knownStatements: KnownStatements?, fence: Int32?, mark: SnapshotMark?
    ) async -> SnapshotResult {
        board.snapshotStarted(serverID: server.id, at: .now)
        defer { board.snapshotEnded(serverID: server.id) }
        do {
            return try await context.limiter.withPermit(suspect: suspect) {
                // The snapshot's time starts with its slot, not while it waits for one.
                let started = ContinuousClock.now
                let deadline = started + context.snapshotTimeout
                return await withRepository(failing: "snapshot skipped") { repository in
                    await takeSnapshot(
                        remote: remote, repository: repository, knownStatements: knownStatements, fence: fence,
                        mark: mark, started: started, deadline: deadline)
                } ?? .failed("snapshot skipped: could not connect to the repository")
            }
        } catch {
            return .failed("snapshot interrupted")  // cancelled while waiting for a permit
        }
    }

    private func takeSnapshot(
        remote: PoWASession,
        repository: PoWARepository,
        knownStatements: KnownStatements?,
        fence: Int32?,
        mark: SnapshotMark?,
        started: ContinuousClock.Instant,
        deadline: ContinuousClock.Instant
    ) async -> SnapshotResult {
        // What is installed on the remote now (powa may have been installed, upgraded or moved
        // since the session opened), and whether it may be snapshotted into this repository.
        var remote = remote
        let sources: [SnapshotSource]
        do {
            let installed = try await remote.currentExtensions(deadline: deadline)
            if installed.pinsCatalogSearchPath != remote.extensions.pinsCatalogSearchPath {
                return .reopen
            }
            remote.extensions = installed
            // (The repository's extensions were read when its session was lent.)
            if let refusal = PoWACompatibility.check(
                remote: installed.version(of: "powa"), repository: repository.extensions.version(of: "powa"),
                database: server.dbname)
            {
                setStatus(refusal.status)
                try await repository.replaceErrors(serverID: server.id, [refusal.description], deadline: deadline)
                return .refused(refusal)
            }
            sources = try await repository.snapshotSources(serverID: server.id, deadline: deadline)
        } catch {
            if Task.isCancelled { return .failed("snapshot interrupted") }  // shutting down
            if !remote.connection.isHealthy {
                setStatus(.noRemoteConnection)
                let message = "snapshot skipped: lost the connection to the remote server: \(error)"
                logger.error("\(message)")
                return .remoteLost(message)
            }
            setStatus(.noRepositoryConnection)
            let message = "snapshot skipped: could not prepare it on the repository: \(error)"
            logger.error("\(message)")
            return .failed(message)
        }
        guard !sources.isEmpty else {
            let message = "no snapshot source is enabled for this server: nothing to do"
            logger.warning("\(message)")
            return .failed(message)
        }
        let refresh = board.takeCatalogRefresh(serverID: server.id)
        let snapshot = RemoteSnapshot(
            server: server, workerName: name, sources: sources, catalogRefresh: refresh, deadline: deadline,
            connectTimeout: context.connectTimeout, applicationName: ApplicationName.workerRepository(name),
            connectionOptions: connectionOptions, knownStatements: knownStatements, metrics: context.metrics,
            fence: fence, expectedMark: mark, logger: logger)
        do {
            let outcome = try await snapshot.land(remote: remote, repository: repository)
            if outcome.statementTextsFailed {
                knownStatements?.forget()
            } else if let seen = outcome.seenStatements {
                knownStatements?.replace(with: seen)
            }
            setStatus(.running)
            if outcome.takeSnapshotErrors != 0 {
                logger.warning(
                    "powa_take_snapshot(\(server.id)) reported \(outcome.takeSnapshotErrors) error(s): see the repository server's log"
                )
            }
            logger.debug(
                "snapshot taken",
                metadata: [
                    "sources": "\(outcome.landedSources)/\(sources.count)",
                    "database_sources": "\(outcome.landedDatabaseSources)", "databases": "\(outcome.databases)",
                    "texts_left_out": "\(outcome.elidedTexts)", "texts_restored": "\(outcome.restoredTexts)",
                    "seconds": "\((ContinuousClock.now - started).secondsValue)",
                ])
            let failures = await snapshot.runCleanups(
                outcome.cleanups, remote: remote.connection, deadline: .now + context.snapshotTimeout)
            if !failures.isEmpty {
                try? await repository.appendErrors(serverID: server.id, failures, deadline: .now + context.connectTimeout)
            }
            return .landed(outcome.mark, began: started)
        } catch {
            // Whatever failed, the known statements may be what did (a reset on the repository
            // made them stale): the next snapshot loads them afresh.
            knownStatements?.forget()
            // Given back for the next snapshot, unless this one ran out of time: a refresh that
            // cannot fit in snapshot_timeout would otherwise stop every snapshot of the server.
            if let refresh, !error.isTimeout { _ = board.requestCatalogRefresh(refresh, serverID: server.id) }
            if case .cancelled = error {
                let message = "snapshot interrupted, its worker stopping (shutdown, reload, server handed over): rolled back"
                logger.info("\(message)")
                return .failed(message)
            }
            if case .superseded(let reason) = error { return .superseded(reason) }
            let message = "snapshot failed and was rolled back: \(error)"
            logger.error("\(message)")
            switch error {
            case .remoteLost:
                setStatus(.noRemoteConnection)
            case .repository:
                if !repository.connection.isHealthy { setStatus(.noRepositoryConnection) }
            case .timedOut, .cancelled, .superseded:
                break
            }
            if repository.connection.isHealthy {
                // Only while this collector owns the server: one frozen or cut off meanwhile
                // must not report a failure on a server another collector now runs well.
                try? await repository.appendErrors(
                    serverID: server.id, ["snapshot failed: \(error)"], owner: fence,
                    deadline: .now + context.connectTimeout)
            } else {
                await recordErrors(["snapshot failed: \(error)"])
            }
            // Out of time, whatever became of the session (the next loop reopens it if needed):
            // such a server waits in the suspects' lane, and is not retried at once.
            if error.isTimeout { return .timedOut(message) }
            if case .remoteLost = error { return .remoteLost(message) }
            return remote.connection.isHealthy ? .failed(message) : .remoteLost(message)
        }
    }
}
