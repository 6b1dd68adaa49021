import PostgresClient
import TestBed
import TestWaiting

/// A LISTEN client of the control protocol, as powa-web is: it LISTENs on a reply channel,
/// sends `NOTIFY powa_collector, '<payload>'`, and waits for the answer.
final class ControlClient {
    let connection: PostgresConnection

    init(connection: PostgresConnection) {
        self.connection = connection
    }

    static func connect(_ repository: ScratchRepository) async throws -> ControlClient {
        ControlClient(connection: try await repository.connect())
    }

    func close() { connection.close() }

    /// Listens on `channel` (quoted as an identifier), sends `payload`, and returns the first
    /// answer on that channel within `timeout` (nil when none came).
    func ask(_ payload: String, channel: String, timeout: Duration = .seconds(5)) async throws -> String? {
        let quoted = "\"" + channel.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        try await connection.execute("LISTEN \(quoted)")
        try await send(payload)
        let deadline = ContinuousClock.now + timeout
        while let notification = try await connection.nextNotification(deadline: deadline) {
            if notification.channel == channel {
                try await connection.execute("UNLISTEN \(quoted)")
                return notification.payload
            }
        }
        try await connection.execute("UNLISTEN \(quoted)")
        return nil
    }

    /// Listens on `channel`, sends `payload`, and returns every answer on that channel until
    /// `window` has passed (several collectors: exactly one must answer).
    func answers(_ payload: String, channel: String, window: Duration) async throws -> [String] {
        let quoted = "\"" + channel.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        try await connection.execute("LISTEN \(quoted)")
        try await send(payload)
        let deadline = ContinuousClock.now + window
        var answers: [String] = []
        while let notification = try await connection.nextNotification(deadline: deadline) {
            if notification.channel == channel { answers.append(notification.payload) }
        }
        try await connection.execute("UNLISTEN \(quoted)")
        return answers
    }

    /// Sends a request without waiting for any answer.
    func send(_ payload: String) async throws {
        _ = try await connection.query("SELECT pg_notify('powa_collector', $1)", [payload])
    }

    /// Asks for the status of the workers until `condition` holds on the answer, or fails.
    func waitForStatus(
        _ condition: (String) -> Bool, channel: String = "r_status", timeout: Duration = .seconds(30)
    ) async throws -> String? {
        var last: String?
        _ = try await eventually(timeout: timeout, interval: .milliseconds(200)) {
            last = try await ask("WORKERS_STATUS \(channel)", channel: channel, timeout: .seconds(2))
            return last.map(condition) ?? false
        }
        return last
    }
}
