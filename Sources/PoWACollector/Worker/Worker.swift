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

    var connectTimeout: Duration { .seconds(configuration.connectTimeout) }
    var snapshotTimeout: Duration { .seconds(configuration.snapshotTimeout) }
}

/// The worker of one remote server: keeps a persistent connection to it (reconnecting with
/// backoff), records its versions, and takes its snapshots on a drift-free schedule until its
/// task is cancelled.
struct Worker {
    let server: RemoteServer
    let context: WorkerContext
    let mailbox: WorkerMailbox
    let name: String
    let logger: Logger

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
    }

    /// Runs until the task is cancelled, or until the server proves unusable (no powa,
    /// incompatible versions, no `powa_snapshot_metas` row): that is reported in the log and
    /// in `powa_snapshot_metas.errors`, and the worker stops.
    func run() async {
        logger.info("worker started", metadata: ["frequency": "\(server.frequency)"])
        var remote: PostgresConnection?
        var schedule: SnapshotSchedule?
        var backoff = Backoff()
        var needsBookkeeping = true
        var outageReported = false
        setStatus(.noRemoteConnection)
        defer {
            remote?.close()
            setStatus(.stopped)
            logger.info("worker stopped")
        }

        while !Task.isCancelled {
            // The persistent remote connection.
            if remote.map({ !$0.isHealthy }) ?? true {
                remote?.close()
                remote = nil
                do {
                    remote = try await connectRemote()
                    backoff.reset()
                    outageReported = false
                    needsBookkeeping = true
                } catch {
                    if Task.isCancelled { return }
                    setStatus(.noRemoteConnection)
                    let message = "could not connect to the remote server: \(error)"
                    if !outageReported {
                        logger.error("\(message)")
                        _ = try? await context.limiter.withPermit { await recordErrors([message]) }
                        outageReported = true
                    } else {
                        logger.debug("\(message)")
                    }
                    await mailbox.wait(until: .now + backoff.next())
                    continue
                }
            }
            guard let connection = remote else { continue }

            // Versions and the first schedule, from the repository.
            if needsBookkeeping || schedule == nil {
                // Start-up work uses a repository connection too: bounded like snapshots, so
                // that a thousand workers starting together do not exhaust max_connections.
                let preparation = try? await context.limiter.withPermit {
                    await prepare(remote: connection)
                }
                switch preparation ?? .retry {
                case .ready(let start):
                    needsBookkeeping = false
                    schedule = schedule ?? start
                    backoff.reset()
                    setStatus(.running)
                case .retry:
                    await mailbox.wait(until: .now + backoff.next())
                    continue
                case .stop:
                    return
                }
            }
            guard var current = schedule else { continue }

            await mailbox.wait(until: current.nextDue)
            if Task.isCancelled { return }
            let requests = mailbox.take()
            if requests.contains(.recheckVersions) { needsBookkeeping = true }
            let due = ContinuousClock.now >= current.nextDue
            guard due || requests.contains(.forceSnapshot) else { continue }

            if await takeSnapshot(remote: connection) == .remoteLost {
                connection.close()
                remote = nil
            }
            if due {
                current.advance(now: .now)
                schedule = current
            }
        }
    }

    // MARK: Connections

    private func connectRemote() async throws -> PostgresConnection {
        let configuration = server.connectionConfiguration(
            applicationName: ApplicationName.worker(name), connectTimeout: context.connectTimeout)
        let connection = try await PostgresConnection.connect(configuration, logger: logger)
        do {
            try await SessionSetup.prepare(connection, deadline: .now + context.connectTimeout)
        } catch {
            connection.close()
            throw error
        }
        logger.debug("connected to the remote server", metadata: ["pid": "\(connection.backendPID)"])
        return connection
    }

    /// A repository connection from the pool (or a new one); give it back with `checkinRepository`.
    private func pooledRepository() async throws -> PoWARepository {
        try await context.pool.checkout(
            dsn: context.configuration.repositoryDSN, applicationName: ApplicationName.workerRepository(name),
            connectTimeout: context.connectTimeout, logger: logger)
    }

    /// A pooled repository connection; when none can be had, sets the status and logs what
    /// could not happen. Give it back with `checkinRepository`.
    private func checkoutRepository(failing consequence: String) async -> PoWARepository? {
        do {
            return try await pooledRepository()
        } catch {
            if !Task.isCancelled {
                setStatus(.noRepositoryConnection)
                logger.error("\(consequence): could not connect to the repository: \(error)")
            }
            return nil
        }
    }

    private func checkinRepository(_ repository: PoWARepository) {
        context.pool.checkin(repository, dsn: context.configuration.repositoryDSN)
    }

    /// Appends errors to the server's `powa_snapshot_metas.errors`, on a pooled connection;
    /// when the repository cannot be reached they are only logged (they were already). The
    /// caller holds a limiter permit.
    private func recordErrors(_ errors: [String]) async {
        guard !errors.isEmpty, !Task.isCancelled else { return }
        do {
            let repository = try await pooledRepository()
            defer { checkinRepository(repository) }
            try await repository.appendErrors(serverID: server.id, errors, deadline: .now + context.connectTimeout)
        } catch {
            logger.warning("could not record the error in the repository: \(error)")
        }
    }

    // MARK: Start-up bookkeeping

    private enum Preparation {
        case ready(SnapshotSchedule)
        case retry
        case stop
    }

    private func prepare(remote: PostgresConnection) async -> Preparation {
        let deadline = ContinuousClock.now + context.snapshotTimeout
        guard let repository = await checkoutRepository(failing: "worker start-up delayed") else { return .retry }
        defer { checkinRepository(repository) }
        do {
            try await VersionsBookkeeping(server: server).run(remote: remote, repository: repository, deadline: deadline)
            let last = try await repository.lastSnapshot(serverID: server.id)
            if last == .missing {
                let message = "server \(server.id) has no row in powa_snapshot_metas: register it with powa_register_server()"
                logger.error("\(message); worker stopped")
                return .stop
            }
            let frequency = Duration.seconds(server.frequency)
            return .ready(SnapshotSchedule.starting(frequency: frequency, lastSnapshot: last, now: .now))
        } catch let error as VersionsBookkeeping.Incompatible {
            logger.error("\(error.description); worker stopped")
            try? await repository.appendErrors(serverID: server.id, [error.description], deadline: deadline)
            return .stop
        } catch {
            if Task.isCancelled { return .retry }
            if !remote.isHealthy {
                setStatus(.noRemoteConnection)
            } else {
                setStatus(.noRepositoryConnection)
            }
            logger.error("could not record the server's versions: \(error)")
            return .retry
        }
    }

    // MARK: Snapshots

    private enum SnapshotResult { case landed, failed, remoteLost }

    private func takeSnapshot(remote: PostgresConnection) async -> SnapshotResult {
        let started = ContinuousClock.now
        board.snapshotStarted(serverID: server.id, at: started)
        defer { board.snapshotEnded(serverID: server.id) }
        let deadline = started + context.snapshotTimeout
        do {
            return try await context.limiter.withPermit {
                guard let repository = await checkoutRepository(failing: "snapshot skipped") else { return .failed }
                defer { checkinRepository(repository) }
                return await takeSnapshot(remote: remote, repository: repository, started: started, deadline: deadline)
            }
        } catch {
            return .failed  // cancelled while waiting for a permit
        }
    }

    private func takeSnapshot(
        remote: PostgresConnection,
        repository: PoWARepository,
        started: ContinuousClock.Instant,
        deadline: ContinuousClock.Instant
    ) async -> SnapshotResult {
        let sources: [SnapshotSource]
        do {
            sources = try await repository.snapshotSources(serverID: server.id)
        } catch {
            if Task.isCancelled { return .failed }  // shutting down
            setStatus(.noRepositoryConnection)
            logger.error("snapshot skipped: could not read the snapshot sources: \(error)")
            return .failed
        }
        guard !sources.isEmpty else {
            logger.warning("no snapshot source is enabled for this server: nothing to do")
            return .failed
        }
        let snapshot = RemoteSnapshot(
            server: server, sources: sources, deadline: deadline,
            applicationName: ApplicationName.workerRepository(name), logger: logger)
        do {
            let outcome = try await snapshot.land(remote: remote, repository: repository)
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
                    "seconds": "\((ContinuousClock.now - started).secondsValue)",
                ])
            await snapshot.runCleanups(remote: remote, deadline: .now + context.snapshotTimeout)
            return .landed
        } catch {
            if Task.isCancelled {
                logger.info("snapshot interrupted by shutdown: rolled back")
                return .failed
            }
            logger.error("snapshot failed and was rolled back: \(error)")
            switch error {
            case .remoteLost:
                setStatus(.noRemoteConnection)
            case .repository:
                if !repository.connection.isHealthy { setStatus(.noRepositoryConnection) }
            case .timedOut:
                break
            }
            if repository.connection.isHealthy {
                try? await repository.connection.execute("ROLLBACK", deadline: .now + context.connectTimeout)
                try? await repository.appendErrors(
                    serverID: server.id, ["snapshot failed: \(error)"], deadline: .now + context.connectTimeout)
            } else {
                await recordErrors(["snapshot failed: \(error)"])
            }
            if case .remoteLost = error { return .remoteLost }
            return remote.isHealthy ? .failed : .remoteLost
        }
    }
}
