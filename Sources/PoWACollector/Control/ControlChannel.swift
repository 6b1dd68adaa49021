import Logging
import PostgresClient

/// The collector's persistent repository connection: `LISTEN powa_collector`, answers to
/// powa-web's requests, and the session powa-web looks for in `pg_stat_activity`
/// (`PoWA collector - main thread (...)`) to show that the collector runs.
///
/// It checks its own liveness when idle, and when the connection drops it reconnects with
/// backoff and LISTENs again, without touching the workers.
struct ControlChannel {
    static let channel = "powa_collector"

    let repositoryDSN: @Sendable () -> String
    let connectTimeout: Duration
    let commands: ControlCommands
    let logger: Logger
    /// How long the connection may stay silent before a liveness check.
    var idleCheck: Duration = .seconds(10)
    /// Where requests and the repository's reachability are counted.
    var metrics: CollectorMetrics? = nil

    /// Runs until the task is cancelled.
    func run() async {
        var backoff = Backoff(initial: .milliseconds(500), ceiling: .seconds(5))
        // One error line per outage, however long it lasts; one info line when it ends.
        let outage = OutageLog(subject: "control channel: the repository")
        while !Task.isCancelled {
            let repository: PoWARepository
            do {
                repository = try await connect()
            } catch {
                if Task.isCancelled { return }
                let delay = backoff.next()
                let seconds = (delay.secondsValue * 10).rounded() / 10
                outage.began("control channel: cannot connect to the repository (retrying in \(seconds) s): \(error)", logger)
                try? await Task.sleep(for: delay)
                continue
            }
            backoff.reset()
            outage.ended(logger)
            metrics?.setRepositoryUp(true)
            logger.debug("control channel: listening on \(Self.channel)")
            do {
                try await serve(repository)
            } catch {
                if !Task.isCancelled {
                    outage.began("control channel: connection to the repository lost: \(error)", logger)
                }
            }
            metrics?.setRepositoryUp(false)
            repository.close()
        }
    }

    private func connect() async throws -> PoWARepository {
        let repository = try await PoWARepository.connect(
            dsn: repositoryDSN(), applicationName: ApplicationName.main(version: Collector.version),
            connectTimeout: connectTimeout, logger: logger)
        do {
            try await repository.connection.execute("LISTEN \(Self.channel)", deadline: .now + connectTimeout)
        } catch {
            repository.close()
            throw error
        }
        return repository
    }

    /// Answers notifications until the connection fails or the task is cancelled.
    private func serve(_ repository: PoWARepository) async throws {
        let connection = repository.connection
        try await withThrowingDiscardingTaskGroup { reloads in
            while !Task.isCancelled {
                guard let notification = try await connection.nextNotification(deadline: .now + idleCheck) else {
                    _ = try await connection.query("SELECT 1", deadline: .now + connectTimeout)
                    continue
                }
                guard notification.channel == Self.channel else { continue }
                try await handle(notification, on: repository, reloads: &reloads)
            }
        }
    }

    private func handle(
        _ notification: PostgresNotification, on repository: PoWARepository,
        reloads: inout ThrowingDiscardingTaskGroup<any Error>
    ) async throws {
        let connection = repository.connection
        let request = ControlRequest(payload: notification.payload)
        guard !request.command.isEmpty else {
            logger.debug("control channel: empty request ignored")
            return
        }
        logger.debug(
            "control channel: request",
            metadata: ["command": "\(request.command.prefix(64))", "sender": "\(notification.senderPID)"])
        let reply: ControlReply
        if try await mayCommand(senderPID: notification.senderPID, on: repository) {
            guard request.command != "RELOAD" else {
                // A reload waits for the repository (and for a reload already running): it is
                // answered when done, on a session of its own, while this one goes on answering
                // the other requests from memory at once.
                reloads.addTask {
                    let reply = await commands.answer(request)
                    metrics?.controlRequest(command: request.command, status: reply.status)
                    // (Cancelled: shutting down, and the reload answered nothing worth sending.)
                    if request.wantsReply, !Task.isCancelled { await sendOnNewSession(reply, to: request.channel) }
                }
                return
            }
            reply = await commands.answer(request)
            metrics?.controlRequest(command: request.command, status: reply.status)
        } else {
            logger.warning(
                "control channel: request refused, the sender may not signal backends",
                metadata: ["command": "\(request.command.prefix(64))", "sender": "\(notification.senderPID)"])
            reply = ControlReply(command: request.command, status: .error, data: "Permission denied")
            metrics?.controlRequest(command: request.command, status: reply.status)
        }
        guard request.wantsReply else { return }
        try await send(reply, to: request.channel, on: connection)
    }

    /// Only roles allowed to signal backends may command the collector: members of
    /// `pg_signal_backend`; in PoWA 5 also members of the roles `powa_roles` maps to
    /// `powa_signal_backend`, `powa_write_all_data` or `powa_admin`; before PostgreSQL 14,
    /// roles that may write PoWA's data.
    private func mayCommand(senderPID: Int32, on repository: PoWARepository) async throws -> Bool {
        let connection = repository.connection
        let sql: String
        var parameters = ["\(senderPID)"]
        if repository.isPoWA5 {
            sql = """
                SELECT pg_catalog.pg_has_role(a.usesysid, 'pg_signal_backend', 'USAGE')
                    OR EXISTS (
                        SELECT 1 FROM \(repository.powa("powa_roles")) r
                        JOIN pg_catalog.pg_roles g ON g.rolname = r.rolname
                        WHERE r.powa_role IN ('powa_signal_backend', 'powa_write_all_data', 'powa_admin')
                          AND pg_catalog.pg_has_role(a.usesysid, g.oid, 'USAGE'))
                FROM pg_catalog.pg_stat_activity a WHERE a.pid = $1
                """
        } else if connection.serverVersionNumber >= 140000 {
            sql = """
                SELECT bool_or(pg_catalog.pg_has_role(usesysid, 'pg_signal_backend', 'USAGE'))
                FROM pg_catalog.pg_stat_activity WHERE pid = $1
                """
        } else {
            sql = """
                SELECT bool_or(pg_catalog.has_table_privilege(usesysid, $2, 'INSERT'))
                FROM pg_catalog.pg_stat_activity WHERE pid = $1
                """
            parameters.append(repository.powa("powa_statements"))
        }
        let result = try await connection.query(sql, parameters, deadline: .now + connectTimeout)
        return result.rows.first?[0] == "t"
    }

    /// Sends the answer with `pg_notify`: the channel and the payload travel as parameters.
    /// Sends an answer on a short session of its own.
    private func sendOnNewSession(_ reply: ControlReply, to channel: String) async {
        do {
            let repository = try await PoWARepository.connect(
                dsn: repositoryDSN(), applicationName: ApplicationName.controlReply, connectTimeout: connectTimeout,
                logger: logger)
            defer { repository.close() }
            try await send(reply, to: channel, on: repository.connection)
        } catch {
            logger.warning("control channel: could not answer \(reply.command.prefix(64)): \(error)")
        }
    }

    private func send(_ reply: ControlReply, to channel: String, on connection: PostgresConnection) async throws {
        // A channel is an identifier: PostgreSQL keeps its first 63 bytes, as NOTIFY "..." would.
        var name = channel
        while name.utf8.count > 63 { name.removeLast() }
        do {
            _ = try await connection.query(
                "SELECT pg_catalog.pg_notify($1, $2)", [name, reply.payload], deadline: .now + connectTimeout)
        } catch let error as PostgresError where error.code == .server {
            logger.warning("control channel: could not answer on channel \(name.prefix(64)): \(error)")
        }
    }
}
