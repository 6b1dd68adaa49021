import Logging
import Synchronization

/// How an outage is logged: once at error level when it begins, at debug level while it lasts,
/// and once at info level when it ends, so that a long outage does not flood the log.
final class OutageLog: Sendable {
    /// What is out, e.g. "the remote server".
    let subject: String
    private let ongoing = Mutex(false)

    init(subject: String) { self.subject = subject }

    var isOngoing: Bool { ongoing.withLock { $0 } }

    /// Logs a failure; returns true for the first of the outage (the one to report).
    @discardableResult
    func began(_ message: String, _ logger: Logger) -> Bool {
        let first = ongoing.withLock { ongoing in
            defer { ongoing = true }
            return !ongoing
        }
        logger.log(level: first ? .error : .debug, "\(message)")
        return first
    }

    /// Logs the end of the outage, if there was one.
    func ended(_ logger: Logger) {
        let was = ongoing.withLock { ongoing in
            defer { ongoing = false }
            return ongoing
        }
        if was { logger.info("\(subject) is reachable again") }
    }
}
