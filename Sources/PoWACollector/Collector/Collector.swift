import Logging
import PostgresClient
import ServiceLifecycle
import Synchronization
import UnixSignals

/// The powa-collector daemon as a service: checks the repository, runs one worker per active
/// remote server, reloads on SIGHUP (and on a RELOAD request), and on graceful shutdown stops
/// every worker, rolling back any snapshot in flight.
///
/// One task group owns every child (the workers' own group, `WorkerFleet.run`; the control
/// channel; the signals), and one loop reacts to what they post (`CollectorEvent`): reloads,
/// the fleet's changes of ownership, powa-web's requests, the shutdown.
public final class Collector: Service, Sendable {
    private typealias Runs = ReloadRuns<(ReloadOutcome) -> Void>

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
    /// What the loop reacts to, from every source.
    private let events = AsyncStream<CollectorEvent>.makeStream()
    /// The version of the fleet's ownership the last reconcile followed (`FleetMembership`).
    private let followed = Mutex<UInt64?>(nil)
    /// systemd's `Type=notify` protocol, when systemd started the daemon.
    private let notifier: SystemdNotifier?
    /// The metrics, when the HTTP endpoint serves them (nil: nothing is counted).
    public let metrics: CollectorMetrics?
    /// This collector's part in the fleet of collectors sharing the repository.
    public let membership = FleetMembership()
    /// The active servers of the last reload (the fleet's assignment picks among them).
    private let activeServers = Mutex<[RemoteServer]>([])
    /// Where snapshots wait while the repository is down (opened at start: nil until then, or
    /// when `spool` is off or its directory cannot be used).
    private let spool = Mutex<SnapshotSpool?>(nil)
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
    }

    /// The configuration in force.
    public var configuration: CollectorConfiguration { state.withLock { $0 } }

    public func run() async throws {
        await openSpool()
        // Waiting for the repository at start-up yields to SIGTERM/SIGINT at once.
        do {
            try await cancelWhenGracefulShutdown {
                try await self.checkRepository()
                // The first server list, however long the repository takes to give it (before the
                // loop runs: nothing else reloads yet).
                var backoff = Backoff()
                while await self.reloadNow(rereadFile: false) != .reloaded {
                    try await Task.sleep(for: backoff.next())
                }
            }
        } catch is CancellationError {
            logger.info("stopped before the repository could be reached")
            notifier?.stopping()
            return
        }
        await withDiscardingTaskGroup { group in
            group.addTask { await self.fleet.run() }
            group.addTask { await self.controlChannel.run() }
            group.addTask {
                for await _ in await UnixSignalsSequence(trapping: .sighup) { self.events.continuation.yield(.hangup) }
            }
            group.addTask {
                // Ready once this collector has joined the fleet and started the workers of
                // the servers it took.
                await self.membership.joined()
                guard !Task.isCancelled,
                    await self.events.continuation.ask({ .ownershipChanged(answer: $0) }) != nil
                else { return }
                self.notifier?.ready(status: self.statusLine)
            }
            if let notifier = self.notifier {
                group.addTask { await self.keepSystemdInformed(notifier) }
            }
            group.addTask {
                // Until the graceful shutdown (or cancellation) arrives.
                try? await gracefulShutdown()
                self.events.continuation.yield(.shutdown)
            }
            await self.react(runningIn: &group)
            notifier?.stopping()
            logger.info("shutting down: stopping every worker")
            // The workers' group with the rest: each worker is cancelled and waited for.
            group.cancelAll()
        }
        logger.info("collector stopped")
    }

    /// The loop: carries out the events until the shutdown (or cancellation), one run (a reload,
    /// or the workers following the fleet) at a time, a child of `group`; the requests that need
    /// no run are answered at once, even while a run goes on.
    private func react(runningIn group: inout DiscardingTaskGroup) async {
        var runs = Runs()
        let commands = ControlCommands(board: board)
        var iterator = events.stream.makeAsyncIterator()
        loop: while let event = await iterator.next() {
            var start: Runs.Run?
            switch event {
            case .reload(let rereadFile, let answer):
                start = runs.request(.reload(rereadFile: rereadFile), waiter: answer.map { answer in { answer.give($0) } })
            case .hangup:
                logger.info("SIGHUP received: reloading")
                start = runs.request(.reload(rereadFile: true))
            case .ownershipChanged(let answer):
                start = runs.request(.followAssignment, waiter: answer.map { answer in { answer.give($0) } })
            case .command(let request, let answer):
                if let reply = commands.answer(request, statuses: fleetStatuses) {
                    answer.give(reply)
                } else {
                    start = runs.request(
                        .reload(rereadFile: true), waiter: { answer.give(ControlCommands.reply(toReload: $0)) })
                }
            case .runEnded(let outcome):
                let (served, next) = runs.ended()
                for waiter in served { waiter(outcome) }
                start = next
            case .shutdown:
                break loop
            }
            if let start {
                group.addTask {
                    let outcome = await self.perform(start)
                    self.events.continuation.yield(.runEnded(outcome))
                }
            }
        }
        // No run comes now: whoever waits for one, or for the one cut short, is told so.
        events.continuation.finish()
        for waiter in runs.abandon() { waiter(.interrupted) }
        while let event = await iterator.next() {
            switch event {
            case .reload(_, let answer), .ownershipChanged(let answer): answer?.give(.interrupted)
            case .command(_, let answer): answer.give(nil)
            case .hangup, .runEnded, .shutdown: continue
            }
        }
    }

    private func perform(_ run: Runs.Run) async -> ReloadOutcome {
        switch run {
        case .reload(let rereadFile):
            let outcome = await reloadNow(rereadFile: rereadFile)
            if rereadFile { metrics?.reloaded(success: outcome == .reloaded) }
            return outcome
        case .followAssignment:
            // (A reload that ran meanwhile may have followed this ownership already.)
            if followed.withLock({ $0 }) != membership.ownershipVersion {
                await reconcileWorkers(configuration: configuration)
            }
            return .reloaded
        }
    }

    /// WORKERS_STATUS's statuses: the fleet's, with the unusable rows no worker has.
    private func fleetStatuses(serverID: Int?) -> [Int: WorkerStatus] {
        listingUnusable(membership.fleetStatuses(local: board.statuses(), serverID: serverID), serverID: serverID)
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
            connectTimeout: .seconds(configuration.connectTimeout), board: board, events: events.continuation,
            logger: logger, fleet: membership, metrics: metrics)
    }

    /// Reconciles the workers with the active servers this collector owns; the lock of each
    /// server given up may go once its worker has stopped (`WorkerFleet` says when).
    private func reconcileWorkers(configuration: CollectorConfiguration) async {
        let (owned, releasing, version) = membership.ownership
        await fleet.reconcile(
            servers: activeServers.withLock { $0 }, ownership: owned.map { .owned($0) } ?? .keepRunning,
            configuration: configuration, logger: logger)
        followed.withLock { $0 = version }
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
        var shown = statusLine
        while !Task.isCancelled {
            try? await Task.sleep(for: tick)
            if Task.isCancelled { return }
            if notifier.watchdogInterval != nil { notifier.watchdog() }
            let summary = statusLine
            if summary != shown {
                notifier.status(summary)
                shown = summary
            }
        }
    }

    /// Re-reads the configuration file (keeping the current one if the new one is invalid) and
    /// the server list, and reconciles the workers: a run of the loop, shared by the requests
    /// that wait for it (`ReloadRuns`). Returns how it went, once the workers follow.
    public func requestReload(rereadFile: Bool = true) async -> ReloadOutcome {
        await events.continuation.ask { .reload(rereadFile: rereadFile, answer: $0) } ?? .interrupted
    }

    /// `requestReload`, true when it reloaded everything.
    @discardableResult
    public func reload(rereadFile: Bool = true) async -> Bool {
        await requestReload(rereadFile: rereadFile) == .reloaded
    }

    /// Opens the spool of the configuration: without it (its directory unusable), the
    /// collector runs as before, and what the repository cannot take is lost.
    private func openSpool() async {
        guard let settings = configuration.spool else { return }
        do {
            let opened = try await SnapshotSpool.open(settings, metrics: metrics, logger: logger)
            spool.withLock { $0 = opened }
            await fleet.use(opened)
        } catch {
            logger.error(
                "spool unusable: snapshots the repository cannot take will be lost: \(error)",
                metadata: ["directory": "\(settings.directory)"])
        }
    }

    /// The Prometheus text of the metrics, with the states read now.
    public func scrapeMetrics() async -> [UInt8] {
        guard let metrics else { return [] }
        return metrics.scrape(
            board: board, limiter: await fleet.currentLimiter, membership: membership, spool: spool.withLock { $0 })
    }

    /// What keeps the daemon from being ready: the repository unreachable, workers not
    /// running (their statuses by server id); empty when ready.
    public func readiness() -> (repositoryUp: Bool, notRunning: [Int: WorkerStatus], spooled: SpoolContents?) {
        let notRunning = listingUnusable(board.statuses()).filter { $0.value != .running }
        return (metrics?.isRepositoryUp ?? true, notRunning, spoolContents)
    }

    /// What waits in the spool, when anything does.
    public var spoolContents: SpoolContents? {
        guard let contents = spool.withLock({ $0 })?.contents, contents.snapshots > 0 else { return nil }
        return SpoolContents(snapshots: contents.snapshots, bytes: contents.bytes)
    }

    /// The workers' summary for systemd, and the spool's.
    private var statusLine: String {
        StatusSummary.line(board.statuses(), spooled: spoolContents)
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
        defer { if rereadFile { notifier?.ready(status: statusLine) } }
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
        // The fleet dividing the new list (this collector's share is what the workers follow).
        let assignment: PendingAnswer<Void>?
        do {
            let repository = try await connectRepository(configuration)
            defer { repository.close() }
            list = try await repository.activeServers(deadline: .now + .seconds(configuration.connectTimeout))
            activeServers.withLock { $0 = list.servers }
            unusableServers.withLock { $0 = Set(list.rejected.map(\.id).filter { $0 > 0 }) }
            assignment = membership.setServers(list.servers.filter(\.isActive).map(\.id))
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
        // One pass: the membership's tick (woken by the NOTIFY) takes this collector's share
        // of the list, and the workers follow it now, before the answer.
        _ = await assignment?.value()
        await reconcileWorkers(configuration: configuration)
        return rejection.map { .configurationRejected($0) } ?? .reloaded
    }
}

/// A problem that stops the daemon at start-up, as one line.
public struct CollectorError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
