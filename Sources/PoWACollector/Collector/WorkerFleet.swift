import Logging
import PostgresClient

/// The running workers, one per active server, keyed by server id, each a child of the task
/// group `run()` owns. Reconciles come one at a time (the collector's loop), whether a SIGHUP,
/// a RELOAD or the fleet's assignment asked for them.
actor WorkerFleet {
    private struct Running {
        let server: RemoteServer
        let settings: CollectorConfiguration
        let mailbox: WorkerMailbox
        let run: WorkerRun
    }

    private struct Launch {
        let run: WorkerRun
        let worker: Worker
    }

    private var running: [Int: Running] = [:]
    /// Workers started and not yet children of `run()`'s group.
    private var launches: [Launch] = []
    /// Wakes `run()` when there are launches.
    private let launched = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    private let board: WorkerBoard
    private var permits: Int
    private var limiter: SnapshotLimiter
    private var pool: RepositoryPool
    /// Set when `run()` is cancelled: a reload still on its way starts nothing after the shutdown.
    private var isStopped = false
    private let metrics: CollectorMetrics?
    /// The fences of the workers' snapshots.
    private let fleet: FleetMembership?
    /// Where the workers' snapshots wait while the repository is down (set at start-up).
    private var spool: SnapshotSpool?

    func use(_ spool: SnapshotSpool?) { self.spool = spool }

    /// The snapshot slots in force (metrics).
    var currentLimiter: SnapshotLimiter { limiter }

    init(board: WorkerBoard, permits: Int, fleet: FleetMembership? = nil, metrics: CollectorMetrics? = nil) {
        self.metrics = metrics
        self.fleet = fleet
        self.board = board
        self.permits = permits
        self.limiter = SnapshotLimiter(permits: permits)
        self.pool = RepositoryPool(capacity: permits)
    }

    /// Runs the workers, each a child of this task group, until the task is cancelled: then
    /// every worker is cancelled too (an in-flight snapshot is rolled back) and waited for.
    func run() async {
        await withDiscardingTaskGroup { group in
            for await _ in launched.stream {
                for launch in takeLaunches() {
                    // A worker waits on its sessions all its life: on the sockets' thread.
                    group.addTask(executorPreference: PostgresConnection.socketExecutor) {
                        await launch.run.run { await launch.worker.run() }
                    }
                }
            }
            // Cancelled (shutting down): so are the workers, which the group waits for.
            isStopped = true
            for id in running.keys { board.setStatus(.stopping, serverID: id) }
        }
        // Started too late to run: whoever stops them goes on.
        for launch in takeLaunches() { launch.run.end() }
        for id in running.keys { board.remove(serverID: id) }
        running = [:]
        pool.closeAll()
    }

    private func takeLaunches() -> [Launch] {
        defer { launches = [] }
        return launches
    }

    /// Starts workers for new servers, stops those of removed or deactivated servers, restarts
    /// those whose connection settings (or the collector's own settings) changed, and asks the
    /// others to re-check their versions (`ReconcilePlan`). Unchanged workers keep their remote
    /// connection.
    func reconcile(
        servers: [RemoteServer], ownership: ReconcilePlan.Ownership = .all, configuration: CollectorConfiguration,
        logger: Logger
    ) async {
        let plan = ReconcilePlan(
            running: running.mapValues { ReconcilePlan.Worker(server: $0.server, settings: $0.settings) },
            servers: servers, ownership: ownership, configuration: configuration, slots: permits)
        guard !isStopped else { return }
        for stop in plan.stops where !stop.retires {
            logger.info("stopping worker", metadata: ["srvid": "\(stop.serverID)", "reason": "\(stop.reason)"])
            await self.stop(stop.serverID, keepEntry: stop.restarts)
        }
        guard !isStopped else { return }
        if let slots = plan.slots {
            // Every worker was restarted above (its settings changed): new slots for the new ones.
            permits = slots
            pool.closeAll()
            limiter = SnapshotLimiter(permits: permits)
            pool = RepositoryPool(capacity: permits)
        }
        let context = WorkerContext(
            configuration: configuration, limiter: limiter, pool: pool, board: board, logger: logger, metrics: metrics,
            fleet: fleet, spool: spool)
        for server in plan.starts { start(server, context: context) }
        for id in plan.rechecks { board.recheckVersions(serverID: id) }
        // Last, and all at once: a worker given up finishes the snapshot it may be taking, and
        // its server's lock goes as soon as it has stopped, whatever the others do.
        let retiring = plan.stops.filter(\.retires).map(\.serverID)
        if !retiring.isEmpty {
            logger.info(
                "stopping workers", metadata: ["srvids": "\(retiring)", "reason": "now snapshotted by another collector"])
        }
        let limit = Duration.seconds(configuration.snapshotTimeout) + .seconds(5)
        await withTaskGroup(of: Int.self) { group in
            for id in retiring {
                guard let worker = running[id] else { continue }
                let board = self.board
                group.addTask {
                    await Self.retire(worker, serverID: id, board: board, within: limit)
                    return id
                }
            }
            for await id in group {
                await stop(id)
                fleet?.workersStopped([id])
            }
        }
        // The spool of a server another member owns now can no longer land (its snapshots
        // would come after that member's): dropped and counted, here rather than in its worker,
        // which a retire cancels.
        if let spool, case .owned(let owned) = ownership {
            for id in spool.servers.subtracting(owned).subtracting(running.keys) {
                await spool.drop(await spool.pending(serverID: id), reason: .moved)
            }
        }
    }

    /// The servers whose workers run here.
    var runningServers: Set<Int> { Set(running.keys) }

    private func start(_ server: RemoteServer, context: WorkerContext) {
        let mailbox = WorkerMailbox()
        board.register(serverID: server.id, mailbox: mailbox)
        metrics?.workerStarted(server)
        let run = WorkerRun()
        launches.append(Launch(run: run, worker: Worker(server: server, context: context, mailbox: mailbox)))
        launched.continuation.yield()
        running[server.id] = Running(server: server, settings: context.configuration, mailbox: mailbox, run: run)
    }

    /// Waits until a worker has stopped once the snapshot it may be taking has ended (one not
    /// ended `within` is rolled back): its fence already keeps it from starting another.
    private static func retire(_ worker: Running, serverID: Int, board: WorkerBoard, within limit: Duration) async {
        worker.mailbox.post(.retire)
        let run = worker.run
        // Not in a snapshot (its fence is closed: none starts now): nothing to wait for.
        if !board.isSnapshotRunning(serverID: serverID) { run.stop() }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await run.stopped() }
            group.addTask {
                try? await Task.sleep(for: limit)
                if !Task.isCancelled { run.stop() }
            }
            await group.next()
            group.cancelAll()
        }
    }

    private func stop(_ id: Int, keepEntry: Bool = false) async {
        guard let worker = running.removeValue(forKey: id) else { return }
        board.setStatus(.stopping, serverID: id)
        worker.run.stop()
        await worker.run.stopped()
        if !keepEntry { board.remove(serverID: id) }
    }
}
