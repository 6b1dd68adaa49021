import Logging

/// How an outage is logged: once at error level when it begins, at debug level while it lasts,
/// and once at info level when it ends, so that a long outage does not flood the log.
struct OutageLog {
    /// What is out, e.g. "the remote server".
    let subject: String
    private(set) var isOngoing = false

    init(subject: String) { self.subject = subject }

    /// Logs a failed attempt; returns true for the first of the outage (the one to report).
    mutating func began(_ message: String, _ logger: Logger) -> Bool {
        defer { isOngoing = true }
        logger.log(level: isOngoing ? .debug : .error, "\(message)")
        return !isOngoing
    }

    /// Logs the end of the outage, if there was one.
    mutating func ended(_ logger: Logger) {
        guard isOngoing else { return }
        isOngoing = false
        logger.info("\(subject) is reachable again")
    }
}
