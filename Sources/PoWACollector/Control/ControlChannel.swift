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

    /// Runs until the task is cancelled.
    func run() async {
        var backoff = Backoff(initial: .milliseconds(500), ceiling: .seconds(5))
        var wasLost = false
        while !Task.isCancelled {
            let connection: PostgresConnection
            do {
                connection = try await connect()
            } catch {
                if Task.isCancelled { return }
                let delay = backoff.next()
                logger.error(
                    "control channel: cannot connect to the repository (retrying in \(delay.secondsValue.rounded()) s): \(error)")
                try? await Task.sleep(for: delay)
                continue
            }
            backoff.reset()
            logger.log(level: wasLost ? .info : .debug, "control channel: listening on \(Self.channel)")
            do {
                try await serve(connection)
            } catch {
                if !Task.isCancelled {
                    logger.error("control channel: connection to the repository lost: \(error)")
                    wasLost = true
                }
            }
            connection.close()
        }
    }

    private func connect() async throws -> PostgresConnection {
        let configuration = ConnectionConfiguration(
            connectionString: repositoryDSN(),
            defaults: ConnectionDefaults.keepalives(connectTimeout: connectTimeout),
            overrides: [.init("application_name", ApplicationName.main(version: Collector.version))],
            connectTimeout: connectTimeout
        )
        let connection = try await PostgresConnection.connect(configuration, logger: logger)
        do {
            try await SessionSetup.prepare(connection, deadline: .now + connectTimeout)
            try await connection.execute("LISTEN \(Self.channel)", deadline: .now + connectTimeout)
        } catch {
            connection.close()
            throw error
        }
        return connection
    }

    /// Answers notifications until the connection fails or the task is cancelled.
    private func serve(_ connection: PostgresConnection) async throws {
        while !Task.isCancelled {
            guard let notification = try await connection.nextNotification(deadline: .now + idleCheck) else {
                _ = try await connection.query("SELECT 1", deadline: .now + connectTimeout)
                continue
            }
            guard notification.channel == Self.channel else { continue }
            try await handle(notification, on: connection)
        }
    }

    private func handle(_ notification: PostgresNotification, on connection: PostgresConnection) async throws {
        let request = ControlRequest(payload: notification.payload)
        guard !request.command.isEmpty else {
            logger.debug("control channel: empty request ignored")
            return
        }
        logger.debug(
            "control channel: request",
            metadata: ["command": "\(request.command.prefix(64))", "sender": "\(notification.senderPID)"])
        let reply: ControlReply
        if try await mayCommand(senderPID: notification.senderPID, on: connection) {
            reply = await commands.answer(request)
        } else {
            logger.warning(
                "control channel: request refused, the sender may not signal backends",
                metadata: ["command": "\(request.command.prefix(64))", "sender": "\(notification.senderPID)"])
            reply = ControlReply(command: request.command, status: .error, data: "Permission denied")
        }
        guard request.wantsReply else { return }
        try await send(reply, to: request.channel, on: connection)
    }

    /// Only roles allowed to signal backends may command the collector: members of
    /// `pg_signal_backend` (PostgreSQL 14+), or roles that may write PoWA's data before that.
    private func mayCommand(senderPID: Int32, on connection: PostgresConnection) async throws -> Bool {
        let sql =
            connection.serverVersionNumber >= 140000
            ? "SELECT bool_or(pg_has_role(usesysid, 'pg_signal_backend', 'USAGE')) FROM pg_stat_activity WHERE pid = $1"
            : "SELECT bool_or(has_table_privilege(usesysid, 'public.powa_statements', 'INSERT')) FROM pg_stat_activity WHERE pid = $1"
        let result = try await connection.query(sql, ["\(senderPID)"], deadline: .now + connectTimeout)
        return result.rows.first?[0] == "t"
    }

    /// Sends the answer with `pg_notify`: the channel and the payload travel as parameters.
    private func send(_ reply: ControlReply, to channel: String, on connection: PostgresConnection) async throws {
        // A channel is an identifier: PostgreSQL keeps its first 63 bytes, as NOTIFY "..." would.
        var name = channel
        while name.utf8.count > 63 { name.removeLast() }
        do {
            _ = try await connection.query(
                "SELECT pg_notify($1, $2)", [name, reply.payload], deadline: .now + connectTimeout)
        } catch let error as PostgresError where error.code == .server {
            logger.warning("control channel: could not answer on channel \(name.prefix(64)): \(error)")
        }
    }
}
