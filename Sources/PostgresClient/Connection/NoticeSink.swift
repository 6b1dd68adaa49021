import CLibPQ
import Logging

/// Receives the server's notices and warnings of one connection and logs them through
/// swift-log instead of libpq's default of printing them on stderr.
///
/// libpq calls the receiver only from inside calls made on that connection, so by its owner.
final class NoticeSink {
    var logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    func receive(_ result: OpaquePointer) {
        let severity = PostgresResultFields.field(result, .severity) ?? "NOTICE"
        let message = PostgresResultFields.field(result, .primaryMessage) ?? ""
        let level: Logger.Level =
            switch severity {
            case "WARNING": .warning
            case "NOTICE", "INFO": .info
            default: .debug
            }
        var metadata: Logger.Metadata = ["severity": "\(severity)"]
        if let sqlState = PostgresResultFields.field(result, .sqlState) { metadata["sqlstate"] = "\(sqlState)" }
        logger.log(level: level, "server \(severity.lowercased()): \(message)", metadata: metadata)
    }
}

/// The C notice receiver: `arg` is the connection's `NoticeSink`, kept alive by the connection.
let noticeReceiver: PQnoticeReceiver = { argument, result in
    guard let argument, let result else { return }
    Unmanaged<NoticeSink>.fromOpaque(argument).takeUnretainedValue().receive(result)
}
