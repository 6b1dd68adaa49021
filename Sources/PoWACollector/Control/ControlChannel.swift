import Logging
import PostgresClient

/// The collector's persistent repository connection: `LISTEN powa_collector`, answers to
/// powa-web's requests, the session powa-web looks for in `pg_stat_activity`
/// (`PoWA collector - main thread (...)`) to show that the collector runs, and this
/// collector's membership of the fleet (`FleetMember`: its locks live on this session).
///
/// Every member of a fleet hears every request. The leader alone answers; RELOAD reloads every
/// member; FORCE_SNAPSHOT and REFRESH_DB_CAT are carried out by the member that runs the
/// server's worker, whose answer the leader relays.
///
/// Requests are carried out by the collector's loop (`CollectorEvent.command`), which answers
/// at once but for RELOAD, answered once its reload is done.
///
/// The membership's tick is also the liveness check; when the connection drops it reconnects
/// with backoff and joins again, without touching the workers (their fences hold their
/// snapshots back until then).
struct ControlChannel {
    static let channel = "powa_collector"

    let repositoryDSN: @Sendable () -> String
    let connectTimeout: Duration
    /// The workers' statuses: whether this member runs a server's worker.
    let board: WorkerBoard
    /// Where requests go to be carried out, and this member's servers taken or given up are
    /// told (the collector's loop).
    let events: AsyncStream<CollectorEvent>.Continuation
    let logger: Logger
    /// This collector's part of the fleet.
    let fleet: FleetMembership
    /// Between two ticks of the membership (each one a statement: the heartbeat).
    var tick: Duration = .seconds(2)
    /// How long the repository lets the membership session stay silent (`idle_session_timeout`).
    var lease: Duration = .seconds(10)
    /// How long the leader waits for the owner of a server to answer for it.
    var relayTimeout: Duration = .seconds(3)
    /// Where requests and the repository's reachability are counted.
    var metrics: CollectorMetrics? = nil

    private let relay = ReplyRelay()

    init(
        repositoryDSN: @escaping @Sendable () -> String, connectTimeout: Duration, board: WorkerBoard,
        events: AsyncStream<CollectorEvent>.Continuation, logger: Logger, fleet: FleetMembership,
        metrics: CollectorMetrics? = nil
    ) {
        self.repositoryDSN = repositoryDSN
        self.connectTimeout = connectTimeout
        self.board = board
        self.events = events
        self.logger = logger
        self.fleet = fleet
        self.metrics = metrics
    }

    /// Runs until the task is cancelled.
    func run() async {
        var backoff = Backoff(initial: .milliseconds(500), ceiling: .seconds(5))
        // One error line per outage, however long it lasts; one info line when it ends.
        let outage = OutageLog(subject: "control channel: the repository")
        while !Task.isCancelled {
            let repository: PoWARepository
            let dsn = repositoryDSN()
            var member = FleetMember(state: fleet, board: board, lease: lease, logger: logger, events: events)
            do {
                repository = try await connect(dsn)
                do {
                    try await member.join(repository, deadline: .now + connectTimeout)
                } catch {
                    repository.close()
                    throw error
                }
            } catch {
                if Task.isCancelled { return }
                let delay = backoff.next()
                outage.began(
                    "control channel: cannot connect to the repository (retrying in \(delay.logText)): \(error)", logger)
                try? await Task.sleep(for: delay)
                continue
            }
            backoff.reset()
            outage.ended(logger)
            metrics?.setRepositoryUp(true)
            logger.debug("control channel: listening on \(Self.channel)")
            var movedAway = false
            do {
                try await serve(repository, dsn: dsn, member: &member)
            } catch is RepositoryMoved {
                logger.info("control channel: repository.dsn changed: joining the fleet there")
                movedAway = true
            } catch {
                if !Task.isCancelled {
                    outage.began("control channel: connection to the repository lost: \(error)", logger)
                }
            }
            // Its locks went with the session: no snapshot lands until the fleet is joined again.
            fleet.left(movedAway: movedAway)
            metrics?.setRepositoryUp(false)
            repository.close()
        }
    }

    /// A reload changed `repository.dsn`: this session, and the locks it holds, are on the old
    /// repository, where the workers no longer commit.
    private struct RepositoryMoved: Error {}

    private func connect(_ dsn: String) async throws -> PoWARepository {
        let repository = try await PoWARepository.connect(
            to: RepositoryEndpoint(
                dsn: dsn, connectTimeout: connectTimeout, applicationName: ApplicationName.main(version: Collector.version)),
            logger: logger)
        do {
            try await repository.listen(Self.channel, deadline: .now + connectTimeout)
        } catch {
            repository.close()
            throw error
        }
        return repository
    }

    /// Ticks and answers notifications until the connection fails or the task is cancelled.
    private func serve(_ repository: PoWARepository, dsn: String, member: inout FleetMember) async throws {
        let connection = repository.connection
        var nextTick = ContinuousClock.now
        var lastTick = ContinuousClock.now
        try await withThrowingDiscardingTaskGroup { pending in
            while !Task.isCancelled {
                if ContinuousClock.now >= nextTick {
                    guard repositoryDSN() == dsn else { throw RepositoryMoved() }
                    // A slow tick (a loaded repository) is no lost session: it may take as long
                    // as the lease the repository enforces, then the session counts as lost.
                    try await member.tick(repository, deadline: .now + max(connectTimeout, lease))
                    lastTick = .now
                    nextTick = lastTick + tick
                }
                guard let notification = try await connection.nextNotification(deadline: nextTick) else { continue }
                switch notification.channel {
                case Self.channel:
                    try await handle(notification, on: repository, pending: &pending)
                case FleetMessage.channel:
                    let message = FleetMessage(payload: notification.payload)
                    if message == .tickNow {
                        // (From a reload's session: no member's. At most 5 ticks a second.)
                        nextTick = min(nextTick, lastTick + .milliseconds(200))
                        continue
                    }
                    // Only the members' own sessions speak on the fleet's channel.
                    guard let message, fleet.view.members.values.contains(notification.senderPID) else { continue }
                    if case .answer(let channel, let payload) = message {
                        if relay.take(channel) { try await notify(channel, payload, on: repository) }
                    } else {
                        member.receive(message)
                    }
                default:
                    continue
                }
            }
        }
    }

    private func handle(
        _ notification: PostgresNotification, on repository: PoWARepository,
        pending: inout ThrowingDiscardingTaskGroup<any Error>
    ) async throws {
        let request = ControlRequest(payload: notification.payload)
        guard !request.command.isEmpty else {
            logger.debug("control channel: empty request ignored")
            return
        }
        logger.debug(
            "control channel: request",
            metadata: ["command": "\(request.command.prefix(64))", "sender": "\(notification.senderPID)"])
        let leads = fleet.isLeader
        guard try await repository.mayCommandCollector(senderPID: notification.senderPID, deadline: .now + connectTimeout)
        else {
            guard leads else { return }
            logger.warning(
                "control channel: request refused, the sender may not signal backends",
                metadata: ["command": "\(request.command.prefix(64))", "sender": "\(notification.senderPID)"])
            let reply = ControlReply(command: request.command, status: .error, data: "Permission denied")
            metrics?.controlRequest(command: request.command, status: reply.status)
            if request.wantsReply { try await notify(request.channel, reply.payload, on: repository) }
            return
        }
        switch request.command {
        case "RELOAD":
            // Every member reloads. A reload waits for the repository (and for a reload already
            // running): it is answered when done, on a session of its own, while this one goes
            // on answering the other requests from memory at once.
            pending.addTask {
                // (None, or cancelled: shutting down, and the reload answered nothing worth sending.)
                guard let reply = await answer(request) else { return }
                if leads, request.wantsReply, !Task.isCancelled { await sendOnNewSession(reply, to: request.channel) }
            }
            return
        case "FORCE_SNAPSHOT", "REFRESH_DB_CAT":
            let serverID = request.arguments.first.flatMap(ControlCommands.serverID)
            if let serverID, !board.statuses(serverID: serverID).isEmpty {
                // This member runs the server's worker: it acts, the leader answers.
                guard let reply = await answer(request), request.wantsReply else { return }
                if leads {
                    try await notify(request.channel, reply.payload, on: repository)
                } else {
                    let relayed = FleetMessage.answerPayload(channel: request.channel, payload: reply.payload)
                    try await notify(FleetMessage.channel, relayed, on: repository)
                }
                return
            }
            guard leads else { return }
            if serverID != nil, fleet.view.members.count > 1 {
                // Another member may run it: its answer is relayed; none in time, and the
                // answer is this member's own (the server is unknown here).
                guard request.wantsReply else { return }
                relay.expect(request.channel)
                pending.addTask {
                    try? await Task.sleep(for: relayTimeout)
                    guard relay.take(request.channel), !Task.isCancelled, let reply = await answer(request) else { return }
                    await sendOnNewSession(reply, to: request.channel)
                }
                return
            }
        default:
            guard leads else { return }
        }
        guard let reply = await answer(request), request.wantsReply else { return }
        try await notify(request.channel, reply.payload, on: repository)
    }

    /// The collector's answer to `request` (counted); nil when the collector is stopping.
    private func answer(_ request: ControlRequest) async -> ControlReply? {
        guard let reply = await events.ask({ .command(request, answer: $0) }) else { return nil }
        metrics?.controlRequest(command: request.command, status: reply.status)
        return reply
    }

    /// Sends an answer on a short session of its own.
    private func sendOnNewSession(_ reply: ControlReply, to channel: String) async {
        do {
            let repository = try await PoWARepository.connect(
                to: RepositoryEndpoint(
                    dsn: repositoryDSN(), connectTimeout: connectTimeout, applicationName: ApplicationName.controlReply),
                logger: logger)
            defer { repository.close() }
            try await notify(channel, reply.payload, on: repository)
        } catch {
            logger.warning("control channel: could not answer \(reply.command.prefix(64)): \(error)")
        }
    }

    /// Sends a payload on a channel; one the repository refuses is logged, the session goes on.
    private func notify(_ channel: String, _ payload: String, on repository: PoWARepository) async throws {
        do {
            try await repository.notify(channel: channel, payload: payload, deadline: .now + connectTimeout)
        } catch let error as PostgresError where error.code == .server {
            logger.warning("control channel: could not answer on channel \(channel.prefix(63)): \(error)")
        }
    }
}
