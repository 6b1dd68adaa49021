import Logging
import Synchronization

/// How an outage is logged: once at error level when it begins, at debug level while it lasts,
/// and once at info level when it ends, with how long it lasted, so that a long outage does not
/// flood the log.
final class OutageLog: Sendable {
    /// What is out, e.g. "the remote server".
    let subject: String
    /// When the ongoing outage began, nil when there is none.
    private let since = Mutex<ContinuousClock.Instant?>(nil)

    init(subject: String) { self.subject = subject }

    /// Logs a failure; returns true for the first of the outage (the one to report).
    @discardableResult
    func began(_ message: String, _ logger: Logger) -> Bool {
        let first = since.withLock { since in
            defer { since = since ?? .now }
            return since == nil
        }
        logger.log(level: first ? .error : .debug, "\(message)")
        return first
    }

    /// Logs the end of the outage, if there was one.
    func ended(_ logger: Logger) {
        let began = since.withLock { since in
            defer { since = nil }
            return since
        }
        guard let began else { return }
        let seconds = Int((ContinuousClock.now - began).secondsValue.rounded())
        logger.info("\(subject) is reachable again (after \(seconds) s)", metadata: ["outage_seconds": "\(seconds)"])
    }
}
