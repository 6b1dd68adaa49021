import Logging

/// The running workers, one per active server, keyed by server id. Reconciles come one at a
/// time (the collector's `ReloadQueue`), whether a SIGHUP or a RELOAD asked for them.
actor WorkerFleet {
    private struct Running {
        let server: RemoteServer
        let settings: CollectorConfiguration
        let task: Task<Void, Never>
    }

    private var running: [Int: Running] = [:]
    private let board: WorkerBoard
    private var permits: Int
    private var limiter: SnapshotLimiter
    private var pool: RepositoryPool
    /// Set by `stopAll`: a reload still on its way starts nothing after the shutdown.
    private var isStopped = false

    init(board: WorkerBoard, permits: Int) {
        self.board = board
        self.permits = permits
        self.limiter = SnapshotLimiter(permits: permits)
        self.pool = RepositoryPool(capacity: permits)
    }

    /// Starts workers for new servers, stops those of removed or deactivated servers, restarts
    /// those whose connection settings (or the collector's own settings) changed, and asks the
    /// others to re-check their versions. Unchanged workers keep their remote connection.
    func reconcile(servers: [RemoteServer], configuration: CollectorConfiguration, logger: Logger) async {
        let wanted = Dictionary(servers.filter(\.isActive).map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        var changed: [Int] = []
        for (id, worker) in running {
            guard let server = wanted[id] else {
                changed.append(id)
                continue
            }
            if server.connectionSettings != worker.server.connectionSettings
                || server.frequency != worker.server.frequency
                || server.alias != worker.server.alias
                || !configuration.sameWorkerSettings(as: worker.settings)
            {
                changed.append(id)
            }
        }
        guard !isStopped else { return }
        for id in changed.sorted() {
            let reason = wanted[id] == nil ? "removed or deactivated" : "settings changed"
            logger.info("stopping worker", metadata: ["srvid": "\(id)", "reason": "\(reason)"])
            // A server that stays keeps its entry on the board until its new worker takes it:
            // WORKERS_STATUS never misses it.
            await stop(id, keepEntry: wanted[id] != nil)
        }
        guard !isStopped else { return }
        if configuration.maxConcurrentSnapshots != permits {
            // Every worker was restarted above (its settings changed): new slots for the new ones.
            permits = configuration.maxConcurrentSnapshots
            pool.closeAll()
            limiter = SnapshotLimiter(permits: permits)
            pool = RepositoryPool(capacity: permits)
        }
        let unchanged = Set(running.keys)
        let context = WorkerContext(
            configuration: configuration, limiter: limiter, pool: pool, board: board, logger: logger)
        for server in wanted.values.sorted(by: { $0.id < $1.id }) where running[server.id] == nil {
            start(server, context: context)
        }
        for id in unchanged { board.recheckVersions(serverID: id) }
    }

    private func start(_ server: RemoteServer, context: WorkerContext) {
        let mailbox = WorkerMailbox()
        board.register(serverID: server.id, mailbox: mailbox)
        let worker = Worker(server: server, context: context, mailbox: mailbox)
        let task = Task { await worker.run() }
        running[server.id] = Running(server: server, settings: context.configuration, task: task)
    }

    private func stop(_ id: Int, keepEntry: Bool = false) async {
        guard let worker = running.removeValue(forKey: id) else { return }
        board.setStatus(.stopping, serverID: id)
        worker.task.cancel()
        await worker.task.value
        if !keepEntry { board.remove(serverID: id) }
    }

    /// Stops every worker (an in-flight snapshot is rolled back) and waits for them.
    func stopAll() async {
        isStopped = true
        let ids = Array(running.keys)
        for id in ids {
            board.setStatus(.stopping, serverID: id)
            running[id]?.task.cancel()
        }
        for id in ids { await stop(id) }
        pool.closeAll()
    }
}

extension CollectorConfiguration {
    /// Whether two configurations run workers the same way (only `debug` may differ).
    func sameWorkerSettings(as other: CollectorConfiguration) -> Bool {
        var mine = self
        mine.debug = other.debug
        return mine == other
    }
}
