import Logging
import PostgresClient
import ServiceLifecycle
import Synchronization
import UnixSignals

/// The powa-collector daemon as a service: checks the repository, runs one worker per active
/// remote server, reloads on SIGHUP (and on a RELOAD request), and on graceful shutdown stops
/// every worker, rolling back any snapshot in flight.
public final class Collector: Service, Sendable {
    /// The release, as `--version`, `application_name`, the package and the image say it.
    /// Bumped in the same commit as CHANGELOG.md, whose latest release a test compares with it.
    public static let version = "2.0.0"

    private let configurationSource: ConfigurationSource
    private let state: Mutex<CollectorConfiguration>
    private let logger: Logger
    private let levelSwitch: LogLevelSwitch?
    /// What the control channel reads and commands.
    public let board = WorkerBoard()
    private let fleet: WorkerFleet
    /// Every reload goes through it, one at a time.
    private let reloads: ReloadQueue
    /// systemd's `Type=notify` protocol, when systemd started the daemon.
    private let notifier: SystemdNotifier?
    /// The metrics, when the HTTP endpoint serves them (nil: nothing is counted).
    public let metrics: CollectorMetrics?
    /// This collector's part in the fleet of collectors sharing the repository.
    public let membership = FleetMembership()
    /// The active servers of the last reload (the fleet's assignment picks among them).
    private let activeServers = Mutex<[RemoteServer]>([])
    /// The active servers whose `powa_servers` row cannot be used, from the last server list:
    /// no worker, but listed (`unusableRow`) wherever statuses are.
    private let unusableServers = Mutex<Set<Int>>([])

    /// - Parameters:
    ///   - configuration: the configuration read at start-up.
    ///   - configurationSource: where to read it again on reload.
    ///   - levelSwitch: the log level to set from `debug` on reload.
    ///   - notifier: where to tell systemd that the daemon is ready, reloading or stopping.
    ///   - metrics: where to count what happens, for the HTTP endpoint.
    public init(
        configuration: CollectorConfiguration,
        configurationSource: ConfigurationSource,
        logger: Logger,
        levelSwitch: LogLevelSwitch? = nil,
        notifier: SystemdNotifier? = nil,
        metrics: CollectorMetrics? = nil
    ) {
        self.notifier = notifier
        self.metrics = metrics
        self.configurationSource = configurationSource
        self.state = Mutex(configuration)
        self.logger = logger
        self.levelSwitch = levelSwitch
        self.fleet = WorkerFleet(
            board: board, permits: configuration.maxConcurrentSnapshots, fleet: membership, metrics: metrics)
        reloads = ReloadQueue()
    }

    /// The configuration in force.
    public var configuration: CollectorConfiguration { state.withLock { $0 } }

    public func run() async throws {
        // Waiting for the repository at start-up yields to SIGTERM/SIGINT at once.
        do {
            try await cancelWhenGracefulShutdown {
                try await self.checkRepository()
                // The first server list, however long the repository takes to give it.
                var backoff = Backoff()
                while await !self.reload(rereadFile: false) {
                    try await Task.sleep(for: backoff.next())
                }
            }
        } catch is CancellationError {
            logger.info("stopped before the repository could be reached")
            notifier?.stopping()
            return
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.reloadOnHangup() }
            group.addTask { await self.controlChannel.run() }
            group.addTask {
                // Ready once this collector has joined the fleet and started the workers of
                // the servers it took.
                await self.membership.joined()
                guard !Task.isCancelled else { return }
                await self.followAssignment()
                self.notifier?.ready(status: StatusSummary.line(self.board.statuses()))
                // (Stays in the group until the end: a task that ends would end the daemon.)
                try? await gracefulShutdown()
            }
            if let notifier = self.notifier {
                group.addTask { await self.keepSystemdInformed(notifier) }
            }
            group.addTask {
                // Runs until the graceful shutdown (or cancellation) arrives.
                try? await gracefulShutdown()
            }
            await group.next()
            group.cancelAll()
        }
        notifier?.stopping()
        logger.info("shutting down: stopping every worker")
        await fleet.stopAll()
        logger.info("collector stopped")
    }

    /// Checks at start-up that the repository has a usable powa; retries while it cannot be
    /// reached, and throws when it is not a PoWA 4 repository (or the DSN is malformed).
    private func checkRepository() async throws {
        var backoff = Backoff()
        // One error line for the outage, however long it lasts (then debug), one when it ends.
        let outage = OutageLog(subject: "the repository")
        while true {
            let configuration = self.configuration
            do {
                let repository = try await connectRepository(configuration)
                defer { repository.close() }
                guard let text = repository.extensions.version(of: "powa") else {
                    throw CollectorError("the powa extension is not installed in the repository database")
                }
                guard let version = PoWAVersion(text), version >= .minimum else {
                    throw CollectorError("powa \(text) on the repository is too old: 4.0 or later is required")
                }
                outage.ended(logger)
                logger.info(
                    "repository ready", metadata: ["powa": "\(text)", "mode": "\(repository.isPoWA5 ? "PoWA 5" : "PoWA 4")"])
                return
            } catch let error as PostgresError where error.code == .invalidConnectionString {
                throw CollectorError("repository.dsn: \(error)")
            } catch let error as CollectorError {
                throw error
            } catch {
                try Task.checkCancellation()
                let delay = backoff.next()
                outage.began("cannot reach the repository (retrying in \(delay.logText)): \(error)", logger)
                notifier?.status("waiting for the repository: \(error)")
                try await Task.sleep(for: delay)
            }
        }
    }

    /// The LISTEN/NOTIFY channel powa-web talks to.
    private var controlChannel: ControlChannel {
        ControlChannel(
            repositoryDSN: { [self] in self.configuration.repositoryDSN },
            connectTimeout: .seconds(configuration.connectTimeout),
            commands: ControlCommands(
                board: board, reload: { [self] in await self.requestReload(rereadFile: true) },
                statuses: { [self] in
                    self.listingUnusable(self.membership.fleetStatuses(local: self.board.statuses(), serverID: $0), serverID: $0)
                }),
            logger: logger, fleet: membership,
            ownershipChanged: { [self] in Task { await self.followAssignment() } }, metrics: metrics)
    }

    /// Runs the workers of the servers this collector owns now (and retires the others'), one
    /// reconcile at a time with the reloads (a reload does this too).
    private func followAssignment() async {
        _ = await reloads.request(replacesPending: false) { [self] in
            await self.reconcileWorkers(configuration: self.configuration)
            return .reloaded
        }
    }

    /// Reconciles the workers with the active servers this collector owns; the lock of each
    /// server given up may go once its worker has stopped (`WorkerFleet` says when).
    private func reconcileWorkers(configuration: CollectorConfiguration) async {
        let releasing = membership.releasing
        let ownership: ReconcilePlan.Ownership = membership.ownedServers.map { .owned($0) } ?? .keepRunning
        await fleet.reconcile(
            servers: activeServers.withLock { $0 }, ownership: ownership, configuration: configuration, logger: logger)
        // Given up and running no worker here (never started, or stopped before): free now.
        membership.workersStopped(releasing.subtracting(await fleet.runningServers))
    }

    private func connectRepository(_ configuration: CollectorConfiguration) async throws -> PoWARepository {
        try await PoWARepository.connect(
            to: RepositoryEndpoint(configuration, applicationName: ApplicationName.main(version: Self.version)),
            logger: logger)
    }

    /// `WATCHDOG=1` at half the unit's `WatchdogSec=` (from a task of the cooperative pool: a
    /// daemon whose tasks no longer run stops sending it, and systemd restarts it), and the
    /// workers' summary in `STATUS=` when it changed, at most every 5 s.
    private func keepSystemdInformed(_ notifier: SystemdNotifier) async {
        let tick = min(notifier.watchdogInterval ?? .seconds(5), .seconds(5))
        var shown = StatusSummary.line(board.statuses())
        while !Task.isCancelled {
            try? await Task.sleep(for: tick)
            if Task.isCancelled { return }
            if notifier.watchdogInterval != nil { notifier.watchdog() }
            let summary = StatusSummary.line(board.statuses())
            if summary != shown {
                notifier.status(summary)
                shown = summary
            }
        }
    }

    private func reloadOnHangup() async {
        for await _ in await UnixSignalsSequence(trapping: .sighup) {
            logger.info("SIGHUP received: reloading")
            await reload(rereadFile: true)
        }
    }

    /// Re-reads the configuration file (keeping the current one if the new one is invalid) and
    /// the server list, and reconciles the workers; one reload at a time (`ReloadQueue`).
    /// Returns how it went.
    public func requestReload(rereadFile: Bool = true) async -> ReloadOutcome {
        await reloads.request { [self] in
            let outcome = await self.reloadNow(rereadFile: rereadFile)
            if rereadFile { self.metrics?.reloaded(success: outcome == .reloaded) }
            return outcome
        }
    }

    /// `requestReload`, true when it reloaded everything.
    @discardableResult
    public func reload(rereadFile: Bool = true) async -> Bool {
        await requestReload(rereadFile: rereadFile) == .reloaded
    }

    /// The Prometheus text of the metrics, with the states read now.
    public func scrapeMetrics() async -> [UInt8] {
        guard let metrics else { return [] }
        return metrics.scrape(board: board, limiter: await fleet.currentLimiter, membership: membership)
    }

    /// What keeps the daemon from being ready: the repository unreachable, workers not
    /// running (their statuses by server id); empty when ready.
    public func readiness() -> (repositoryUp: Bool, notRunning: [Int: WorkerStatus]) {
        let notRunning = listingUnusable(board.statuses()).filter { $0.value != .running }
        return (metrics?.isRepositoryUp ?? true, notRunning)
    }

    /// `statuses` (of every server, or of `serverID`), with the unusable rows no worker has.
    private func listingUnusable(_ statuses: [Int: WorkerStatus], serverID: Int? = nil) -> [Int: WorkerStatus] {
        var listed = statuses
        for id in unusableServers.withLock({ $0 }) where listed[id] == nil && (serverID == nil || serverID == id) {
            listed[id] = .unusableRow
        }
        return listed
    }

    private func reloadNow(rereadFile: Bool) async -> ReloadOutcome {
        // (The first server list, at start-up, is not a reload for systemd.)
        if rereadFile { notifier?.reloading() }
        defer { if rereadFile { notifier?.ready(status: StatusSummary.line(board.statuses())) } }
        var rejection: String?
        if rereadFile {
            do {
                let (fresh, origin) = try configurationSource.load()
                state.withLock { $0 = fresh }
                logger.info("configuration reloaded", metadata: ["file": "\(origin)"])
            } catch {
                logger.error("configuration not reloaded, keeping the current one: \(error)")
                rejection = "\(error)"
            }
        }
        let configuration = self.configuration
        levelSwitch?.current = configuration.debug ? .debug : .info
        let list: ServerList
        do {
            let repository = try await connectRepository(configuration)
            defer { repository.close() }
            list = try await repository.activeServers(deadline: .now + .seconds(configuration.connectTimeout))
            activeServers.withLock { $0 = list.servers }
            unusableServers.withLock { $0 = Set(list.rejected.map(\.id).filter { $0 > 0 }) }
            membership.setServers(list.servers.filter(\.isActive).map(\.id))
            // The members (this one too) divide the list now, not at their next tick.
            try? await repository.notify(
                channel: FleetMessage.channel, payload: FleetMessage.tickNowPayload,
                deadline: .now + .seconds(configuration.connectTimeout))
            // An unusable row is said where powa-web shows it until it is fixed (the server's
            // next snapshot resets it).
            do {
                try await repository.reportUnusableRows(
                    list.rejected, deadline: .now + .seconds(configuration.connectTimeout))
            } catch {
                logger.warning("could not report the unusable rows of powa_servers in their errors: \(error)")
            }
        } catch {
            logger.error("could not read the list of servers from the repository: \(error)")
            // Still, the workers follow the servers this collector took or gave up meanwhile
            // (a reload may have replaced the reconcile that a change of ownership asked for).
            await reconcileWorkers(configuration: configuration)
            return .serverListUnread
        }
        for rejected in list.rejected {
            logger.error("server ignored: \(rejected)", metadata: ["srvid": "\(rejected.id)"])
        }
        logger.info("active remote servers: \(list.servers.count)")
        await reconcileWorkers(configuration: configuration)
        return rejection.map { .configurationRejected($0) } ?? .reloaded
    }
}

/// A problem that stops the daemon at start-up, as one line.
public struct CollectorError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
