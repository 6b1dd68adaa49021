import Logging
import Synchronization

/// Collects log records in memory so a test can assert what was logged.
public final class LogCapture: Sendable {
    /// One captured log record.
    public struct Record: Sendable {
        public let level: Logger.Level
        public let message: String
        public let metadata: [String: String]
    }

    private let records = Mutex<[Record]>([])

    public init() {}

    /// A logger writing into this capture at `level` and above.
    public func logger(label: String = "powa.tests", level: Logger.Level = .trace) -> Logger {
        var logger = Logger(label: label) { _ in Handler(capture: self) }
        logger.logLevel = level
        return logger
    }

    /// Everything captured so far.
    public var all: [Record] { records.withLock { $0 } }

    /// Every captured line: level, message and metadata, as a log file would show them.
    public var lines: [String] {
        all.map { record in
            "\(record.level) \(record.message) "
                + record.metadata.sorted { $0.key < $1.key }.map { "\($0)=\($1)" }.joined(separator: " ")
        }
    }

    fileprivate func append(_ record: Record) { records.withLock { $0.append(record) } }

    private struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { $1 }
            capture.append(
                Record(
                    level: event.level, message: event.message.description,
                    metadata: merged.mapValues { "\($0)" }))
        }
    }
}
