import Logging
import Synchronization

/// The daemon's log level, changeable at run time (the `debug` setting takes effect on
/// reload), shared by every logger made through `handler(label:)`.
public final class LogLevelSwitch: Sendable {
    private let level: Mutex<Logger.Level>

    public init(_ level: Logger.Level) { self.level = Mutex(level) }

    public var current: Logger.Level {
        get { level.withLock { $0 } }
        set { level.withLock { $0 = newValue } }
    }

    /// A handler that writes to stderr in `format`, at this switch's level.
    public func handler(label: String, format: LogFormat = .text) -> any LogHandler {
        switch format {
        case .text: SwitchedLogHandler(base: StreamLogHandler.standardError(label: label), levelSwitch: self)
        case .json: SwitchedLogHandler(base: JSONLogHandler(), levelSwitch: self)
        }
    }

    private struct SwitchedLogHandler: LogHandler {
        var base: any LogHandler
        let levelSwitch: LogLevelSwitch

        var logLevel: Logger.Level {
            get { levelSwitch.current }
            set {}  // the switch decides
        }

        var metadata: Logger.Metadata {
            get { base.metadata }
            set { base.metadata = newValue }
        }

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { base[metadataKey: key] }
            set { base[metadataKey: key] = newValue }
        }

        func log(event: LogEvent) { base.log(event: event) }
    }
}
