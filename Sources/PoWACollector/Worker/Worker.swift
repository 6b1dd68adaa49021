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
    /// Where snapshots wait while the repository cannot take them (nil: none, they are lost).
    var spool: SnapshotSpool? = nil

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
    /// Where its errors are written for powa-web.
    let report: SnapshotReport
    /// Outages, each logged once (see `OutageLog`).
    private let remoteOutage = OutageLog(subject: "the remote server")
    private let repositoryOutage = OutageLog(subject: "the repository")
    private let preparationOutage = OutageLog(subject: "the server's bookkeeping")

    init(server: RemoteServer, context: WorkerContext, mailbox: WorkerMailbox) {
        self.server = server
        self.context = context
        self.mailbox = mailbox
        report = SnapshotReport(serverID: server.id, fleet: context.fleet)
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

    /// Runs until the task is cancelled or the server is handed over: carries out the actions
    /// of its `WorkerCycle`, which makes every decision.
    func run() async {
        logger.info("worker started", metadata: ["frequency": "\(server.frequency)"])
        var cycle = WorkerCycle(frequency: .seconds(server.frequency))
        var remote: PoWASession?
        /// The statements whose texts the repository has (`skip_known_query_texts`).
        let knownStatements = context.configuration.skipKnownQueryTexts ? KnownStatements() : nil
        /// What a spooled snapshot reads: what the repository said at the last one that landed.
        let basis = SpoolBasisMemory()
        var shown = cycle.status
        setStatus(shown)
        defer {
            remote?.close()
            setStatus(.stopped)
            logger.info("worker stopped")
        }
        var action = cycle.start()
        while !Task.isCancelled {
            switch action {
            case .connect:
                remote?.close()
                remote = nil
                do {
                    remote = try await connectRemote()
                    knownStatements?.forget()
                    remoteOutage.ended(logger)
                    action = cycle.connected()
                } catch {
                    if Task.isCancelled { return }
                    action = cycle.connectFailed(now: .now)
                    let message = "could not connect to the remote server: \(error)"
                    if remoteOutage.began(message, logger) {
                        await recordErrors([message])
                    }
                }
            case .prepare:
                guard let session = remote else {
                    action = cycle.lost()
                    continue
                }
                switch await prepare(remote: session.connection) {
                case .ready(let start, let lastMark):
                    preparationOutage.ended(logger)
                    knownStatements?.forget()
                    action = cycle.prepared(start: start, lastMark: lastMark, now: .now)
                case .failed(let problem, let message):
                    if let message { preparationOutage.began(message, logger) }
                    action = cycle.preparationFailed(problem, now: .now)
                }
            case .pause(let until):
                // A mailbox request (FORCE_SNAPSHOT, a reload) never shortens a backoff.
                try? await Task.sleep(until: until, clock: .continuous)
                action = cycle.resumed(now: .now, remoteAlive: remote?.connection.probe() ?? false)
            case .wait(let until):
                await mailbox.wait(until: until)
                if Task.isCancelled { return }
                let requests = mailbox.take()
                action = cycle.woke(
                    requests: requests, now: .now, remoteAlive: remote?.connection.probe() ?? false,
                    ownership: ownership)
                if cycle.isHeldBack {
                    logger.debug("snapshot held back: this collector does not own the server now")
                }
            case .snapshot(let plan):
                guard let session = remote else {
                    action = cycle.lost()
                    continue
                }
                let refusal = cycle.refusal
                let started = ContinuousClock.now
                let result = await takeSnapshot(
                    remote: session, plan: plan, knownStatements: knownStatements, basis: basis)
                if let metrics = context.metrics, let outcome = result.metricsOutcome {
                    metrics.snapshotEnded(server, outcome: outcome, duration: .now - started)
                }
                if let mark = result.spoolMark { cycle.spoolLanded(mark: mark) }
                let end = result.end
                action = cycle.snapshotEnded(end, now: .now)
                log(end, refusalBefore: refusal)
                if case .remoteLost = end { session.close() }
                if case .reopen = end { session.close() }
            case .stop:
                return
            }
            if cycle.status != shown {
                shown = cycle.status
                setStatus(shown)
            }
        }
    }

    /// What the fleet says of the server now.
    private var ownership: WorkerCycle.Ownership {
        guard let fleet = context.fleet else { return .owned(fence: nil) }
        guard let fence = fleet.fence(serverID: server.id) else {
            if context.spool != nil, fleet.heldWhenLeft(serverID: server.id) { return .heldWhenLeft }
            return .notOwned(member: fleet.isMember)
        }
        return .owned(fence: fence)
    }

    /// The lines a snapshot's end is worth beyond its own (a refusal once, its end once).
    private func log(_ end: WorkerCycle.SnapshotEnd, refusalBefore: PoWACompatibility.Refusal?) {
        switch end {
        case .landed:
            if let refusalBefore {
                logger.info("the remote server can be snapshotted again", metadata: ["was": "\(refusalBefore.description)"])
            }
        case .refused(let reason):
            logger.log(level: refusalBefore != reason ? .error : .debug, "snapshot refused: \(reason.description)")
        case .landedElsewhere:
            logger.info("snapshot left to the one that landed meanwhile")
        default:
            break
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
            await recordErrors([message])
            return message
        }
        defer { session.close() }
        if case .failed(_, let problem) = await prepare(remote: session.connection) {
            let message = problem ?? "could not reach the repository"
            logger.error("\(message)")
            return message
        }
        let knownStatements = context.configuration.skipKnownQueryTexts ? KnownStatements() : nil
        let plan = WorkerCycle.SnapshotPlan(lane: .regular, mark: nil, fence: nil, silenceLimit: nil)
        let result = await takeSnapshot(
            remote: session, plan: plan, knownStatements: knownStatements, basis: SpoolBasisMemory())
        switch result.end {
        case .landed: return nil
        case .refused(let refusal): return refusal.description
        case .reopen: return "the remote server's powa changed during the snapshot: run it again"
        default: return result.message ?? "snapshot rolled back"
        }
    }

    // MARK: Sessions

    /// The configuration's extra libpq keywords for this server (`servers`).
    var connectionOptions: [ConnectionConfiguration.Parameter] {
        context.configuration.serverOptions.options(for: server)
    }

    private func connectRemote() async throws -> PoWASession {
        let session = try await PoWASession.remote(
            server, applicationName: ApplicationName.worker(name), connectTimeout: context.connectTimeout,
            options: connectionOptions, logger: logger)
        logger.debug("connected to the remote server", metadata: ["pid": "\(session.connection.backendPID)"])
        return session
    }

    /// Lends `body` a pooled repository session; when none can be had, logs what could not
    /// happen (`consequence`, once per outage) and returns nil.
    func withRepository<T>(failing consequence: String, _ body: (PoWARepository) async -> T) async -> T? {
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
                repositoryOutage.began("\(consequence): could not connect to the repository: \(error)", logger)
            }
            return nil
        }
    }

    /// Appends errors to the server's `powa_snapshot_metas.errors` (`once`: unless shown
    /// already), on a pooled session in a regular slot, through the worker's `SnapshotReport`;
    /// when the repository cannot be reached they are only logged (they were already).
    func recordErrors(_ errors: [String], once: Bool = true) async {
        guard !errors.isEmpty, !Task.isCancelled else { return }
        _ = try? await context.limiter.withPermit { await recordErrorsHoldingSlot(errors, once: once) }
    }

    /// `recordErrors`, for a caller that holds a slot already.
    func recordErrorsHoldingSlot(_ errors: [String], once: Bool = true) async {
        guard !errors.isEmpty, !Task.isCancelled else { return }
        _ = await withRepository(failing: "error not recorded") { repository in
            do {
                try await report.append(errors, once: once, on: repository, deadline: .now + context.connectTimeout)
            } catch {
                logger.warning("could not record the error in the repository: \(error)")
            }
        }
    }

    // MARK: Start-up bookkeeping

    private enum Preparation {
        /// The first schedule, and the server's `snapts` it follows.
        case ready(SnapshotSchedule, SnapshotMark?)
        /// Try again after a backoff; the message, if any, is for the log (once per outage).
        case failed(WorkerCycle.PreparationProblem, String?)
    }

    /// The remote's versions are read first, holding nothing (a remote that does not answer
    /// holds no slot); then they are recorded, and the server's last snapshot read, on a
    /// repository session that holds a regular slot, so that a thousand workers starting
    /// together do not exhaust max_connections.
    private func prepare(remote: PostgresConnection) async -> Preparation {
        let versions: RemoteVersions
        do {
            versions = try await RemoteVersions.read(remote, deadline: .now + context.snapshotTimeout)
        } catch {
            if Task.isCancelled { return .failed(.remoteDown, nil) }
            return .failed(.remoteDown, "could not read the server's versions: \(error)")
        }
        do {
            return try await context.limiter.withPermit {
                await withRepository(failing: "worker start-up delayed") { repository in
                    await record(versions, on: repository, deadline: .now + context.snapshotTimeout)
                } ?? .failed(.repositoryDown, nil)
            }
        } catch {
            return .failed(.repositoryDown, nil)  // cancelled while waiting for a slot
        }
    }

    private func record(
        _ versions: RemoteVersions, on repository: PoWARepository, deadline: ContinuousClock.Instant
    ) async -> Preparation {
        do {
            try await repository.recordVersions(versions, serverID: server.id, deadline: deadline)
            let (last, mark) = try await repository.lastSnapshot(serverID: server.id, deadline: deadline)
            if last == .missing {
                return .failed(
                    .unregistered,
                    "server \(server.id) has no row in powa_snapshot_metas: register it with powa_register_server()")
            }
            let frequency = Duration.seconds(server.frequency)
            return .ready(SnapshotSchedule.starting(frequency: frequency, lastSnapshot: last, now: .now), mark)
        } catch {
            if Task.isCancelled { return .failed(.repositoryDown, nil) }
            return .failed(.repositoryDown, "could not record the server's versions: \(error)")
        }
    }

    // MARK: Snapshots

    /// A snapshot of the server with this worker's settings (live, spooled or landing from the
    /// spool).
    func remoteSnapshot(
        sources: [SnapshotSource], deadline: ContinuousClock.Instant, fence: Int32?, expectedMark: SnapshotMark?,
        silence: SilenceWatch?, knownStatements: KnownStatements?, catalogRefresh: CatalogRefresh? = nil
    ) -> RemoteSnapshot {
        RemoteSnapshot(
            server: server, workerName: name, sources: sources, catalogRefresh: catalogRefresh, deadline: deadline,
            connectTimeout: context.connectTimeout, applicationName: ApplicationName.workerRepository(name),
            connectionOptions: connectionOptions, knownStatements: knownStatements, metrics: context.metrics,
            fence: fence, expectedMark: expectedMark, silence: silence, report: report, logger: logger)
    }

    /// How a snapshot ended: for the cycle, for the metrics, and in the log's words.
    struct SnapshotResult {
        let end: WorkerCycle.SnapshotEnd
        /// Why it did not land (nil when it did, or was rolled back on purpose).
        var message: String? = nil
        /// The server's `snapts` after the spooled snapshots that landed first, if any did.
        var spoolMark: SnapshotMark? = nil

        var metricsOutcome: CollectorMetrics.Outcome? {
            switch end {
            case .landed: .success
            case .timedOut: .timedOut
            case .failed, .remoteLost, .refused: .failed
            case .reopen, .landedElsewhere, .heldBack, .spooled: nil
            }
        }

        static func failed(_ message: String, repositoryDown: Bool = false) -> SnapshotResult {
            SnapshotResult(end: .failed(repositoryDown: repositoryDown), message: message)
        }
    }

    /// Takes a snapshot: first the server's spooled snapshots, if any, land (`landSpool`);
    /// then this one, in a slot of the plan's lane, then (the slot given back: they wait for
    /// the remote only) the sources' cleanups run. When the repository cannot take it, it is
    /// spooled instead (`spoolSnapshot`).
    private func takeSnapshot(
        remote: PoWASession, plan: WorkerCycle.SnapshotPlan, knownStatements: KnownStatements?,
        basis: SpoolBasisMemory
    ) async -> SnapshotResult {
        board.snapshotStarted(serverID: server.id, at: .now)
        defer { board.snapshotEnded(serverID: server.id) }
        // What is installed on the remote now (powa may have been installed, upgraded or moved
        // since the session opened). Asked before a slot is taken: a remote that does not
        // answer at all holds none while the worker waits for it.
        var remote = remote
        do {
            let installed = try await remote.currentExtensions(deadline: .now + context.snapshotTimeout)
            if installed.pinsCatalogSearchPath != remote.extensions.pinsCatalogSearchPath {
                return SnapshotResult(end: .reopen)
            }
            remote.extensions = installed
        } catch {
            if Task.isCancelled { return .failed("snapshot interrupted") }
            let timedOut = PostgresError.Code.timedOut ~= error
            let message =
                timedOut
                ? "snapshot skipped: the remote server did not answer within snapshot_timeout"
                : "snapshot skipped: lost the connection to the remote server: \(error)"
            logger.error("\(message)")
            if timedOut {
                await recordErrors([message], once: false)
                return SnapshotResult(end: .timedOut(), message: message)
            }
            return remote.connection.isHealthy ? .failed(message) : SnapshotResult(end: .remoteLost, message: message)
        }
        var plan = plan
        var spoolMark: SnapshotMark?
        if let spool = context.spool, !plan.spoolOnly, spool.has(serverID: server.id), basis.value != nil {
            return await catchUp(spool, remote: remote, plan: plan, knownStatements: knownStatements, basis: basis)
        }
        if let spool = context.spool, !plan.spoolOnly {
            switch await landSpool(spool, remote: remote, plan: plan, knownStatements: knownStatements) {
            case .landed(let mark):
                spoolMark = mark
            case .repositoryDown(let mark):
                spoolMark = mark
                plan.spoolOnly = true
            case .ended(var result, let mark):
                result.spoolMark = mark
                return result
            }
            plan.mark = spoolMark ?? plan.mark
        }
        var result: SnapshotResult
        if plan.spoolOnly, let spool = context.spool {
            result = await spoolSnapshot(spool, remote: remote, plan: plan, knownStatements: knownStatements, basis: basis)
        } else {
            result = await takeLiveSnapshot(remote: remote, plan: plan, knownStatements: knownStatements, basis: basis)
        }
        result.spoolMark = spoolMark
        return result
    }

    /// A snapshot into the repository, in a slot of the plan's lane; then (the slot given
    /// back: they wait for the remote only) the sources' cleanups. Spooled when the repository
    /// cannot take it.
    private func takeLiveSnapshot(
        remote: PoWASession, plan: WorkerCycle.SnapshotPlan, knownStatements: KnownStatements?,
        basis: SpoolBasisMemory
    ) async -> SnapshotResult {
        // What powa-web has not been told yet of spooled snapshots dropped: with this one.
        let notices = context.spool?.takeNotices(serverID: server.id) ?? [:]
        let landing: (SnapshotResult, cleanups: [(source: String, sql: String)])
        do {
            landing = try await context.limiter.withSlot(plan.lane) { slot in
                // The snapshot's time starts with its slot, not while it waits for one.
                let started = ContinuousClock.now
                let deadline = started + context.snapshotTimeout
                // A remote that goes silent leaves its regular slot to the others at once.
                let silence = slot.silenceWatch(planned: plan.silenceLimit, timeout: context.snapshotTimeout)
                return await withRepository(failing: "snapshot skipped") { repository in
                    await takeSnapshot(
                        remote: remote, repository: repository, plan: plan, knownStatements: knownStatements,
                        basis: basis, notices: notices, silence: silence, started: started, deadline: deadline)
                } ?? (.failed("snapshot skipped: could not connect to the repository", repositoryDown: true), [])
            }
        } catch {
            context.spool?.restoreNotices(serverID: server.id, notices)
            return .failed("snapshot interrupted")  // cancelled while waiting for a slot
        }
        if case .landed = landing.0.end {} else { context.spool?.restoreNotices(serverID: server.id, notices) }
        if case .failed(repositoryDown: true) = landing.0.end, let spool = context.spool, !Task.isCancelled {
            return await spoolSnapshot(spool, remote: remote, plan: plan, knownStatements: knownStatements, basis: basis)
        }
        await runCleanups(landing.cleanups, remote: remote)
        return landing.0
    }

    /// The cleanups of a snapshot that is safe (landed, or spooled and synced): errors under the
    /// fence, as every error (none on a server another collector owns now).
    func runCleanups(_ cleanups: [(source: String, sql: String)], remote: PoWASession) async {
        guard !cleanups.isEmpty else { return }
        let failures = await RemoteSnapshot.runCleanups(
            cleanups, remote: remote.connection, deadline: .now + context.snapshotTimeout, logger: logger)
        await recordErrors(failures, once: false)
    }

    private func takeSnapshot(
        remote: PoWASession,
        repository: PoWARepository,
        plan: WorkerCycle.SnapshotPlan,
        knownStatements: KnownStatements?,
        basis: SpoolBasisMemory,
        notices: [SnapshotSpool.DropReason: Int],
        silence: SilenceWatch?,
        started: ContinuousClock.Instant,
        deadline: ContinuousClock.Instant
    ) async -> (SnapshotResult, cleanups: [(source: String, sql: String)]) {
        // Whether the remote may be snapshotted into this repository (whose extensions were
        // read when its session was checked out).
        let sources: [SnapshotSource]
        do {
            if let refusal = PoWACompatibility.check(
                remote: remote.extensions.version(of: "powa"), repository: repository.extensions.version(of: "powa"),
                database: server.dbname)
            {
                try await report.replace([refusal.description], on: repository, deadline: deadline)
                return (SnapshotResult(end: .refused(refusal)), [])
            }
            sources = try await repository.snapshotSources(serverID: server.id, deadline: deadline)
        } catch {
            if Task.isCancelled { return (.failed("snapshot interrupted"), []) }  // shutting down
            if !remote.connection.isHealthy {
                let message = "snapshot skipped: lost the connection to the remote server: \(error)"
                logger.error("\(message)")
                return (SnapshotResult(end: .remoteLost, message: message), [])
            }
            let message = "snapshot skipped: could not prepare it on the repository: \(error)"
            logger.error("\(message)")
            return (.failed(message, repositoryDown: true), [])
        }
        guard !sources.isEmpty else {
            let message = "no snapshot source is enabled for this server: nothing to do"
            logger.warning("\(message)")
            return (.failed(message), [])
        }
        let refresh = board.takeCatalogRefresh(serverID: server.id)
        var snapshot = remoteSnapshot(
            sources: sources, deadline: deadline, fence: plan.fence, expectedMark: plan.mark, silence: silence,
            knownStatements: knownStatements, catalogRefresh: refresh)
        snapshot.notices = SnapshotSpool.describe(notices)
        do {
            let outcome = try await snapshot.land(remote: remote, repository: repository)
            basis.value = SpoolBasis(
                sources: sources, isPoWA5: repository.isPoWA5, databaseSources: outcome.databaseSources)
            if outcome.statementTextsFailed {
                knownStatements?.forget()
            } else if let seen = outcome.seenStatements {
                knownStatements?.replace(with: seen)
            }
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
            return (
                SnapshotResult(end: .landed(outcome.mark, began: started, longestWait: silence?.longestWait)),
                outcome.cleanups
            )
        } catch {
            // Whatever failed, the known statements may be what did (a reset on the repository
            // made them stale): the next snapshot loads them afresh.
            knownStatements?.forget()
            // Given back for the next snapshot, unless this one ran out of time: a refresh that
            // cannot fit in snapshot_timeout would otherwise stop every snapshot of the server.
            if let refresh {
                if case .timedOut = error.kind {} else { _ = board.requestCatalogRefresh(refresh, serverID: server.id) }
            }
            switch error.kind {
            case .cancelled:
                let message = "snapshot interrupted, its worker stopping (shutdown, reload, server handed over): rolled back"
                logger.info("\(message)")
                return (.failed(message), [])
            case .superseded(.landedElsewhere(let newMark, let secondsAgo)):
                return (SnapshotResult(end: .landedElsewhere(newMark, secondsAgo: secondsAgo)), [])
            case .superseded(let reason):
                // Another snapshot commits now, or the server is changing hands: the same slot
                // in a moment, if this collector still owns the server then.
                logger.info("snapshot rolled back: \(reason)")
                return (SnapshotResult(end: .heldBack), [])
            default:
                break
            }
            let message = "snapshot failed and was rolled back: \(error)"
            logger.error("\(message)")
            // Only while this collector owns the server: one frozen or cut off meanwhile must
            // not report a failure on a server another collector now runs well.
            if repository.connection.isHealthy {
                try? await report.append(
                    ["snapshot failed: \(error)"], on: repository, deadline: .now + context.connectTimeout)
            } else {
                await recordErrorsHoldingSlot(["snapshot failed: \(error)"])
            }
            // Out of time, whatever became of the session (the next wake-up reopens it if
            // needed): such a server waits in the suspects' lane, and is not retried at once.
            switch error.kind {
            case .timedOut:
                return (SnapshotResult(end: .timedOut(), message: message), [])
            case .remoteSilent(let limit):
                return (SnapshotResult(end: .timedOut(silentFor: limit), message: message), [])
            case .remoteLost:
                return (SnapshotResult(end: .remoteLost, message: message), [])
            case .repositoryFailed:
                // The repository down, or unable to work now (a full disk, a failover...): the
                // snapshot is read again into the spool.
                let down = !repository.connection.isHealthy || RepositoryOutage.matches(error.underlying)
                return (.failed(message, repositoryDown: down), [])
            default:
                break
            }
            return (.failed(message), [])
        }
    }
}
