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
        case .text: SwitchedLogHandler(base: StreamLogHandler.standardError(label: label), levelSwitch: self, folds: true)
        case .json: SwitchedLogHandler(base: JSONLogHandler(), levelSwitch: self, folds: false)
        }
    }

    private struct SwitchedLogHandler: LogHandler {
        var base: any LogHandler
        let levelSwitch: LogLevelSwitch
        /// Text lines: every newline of a message or a metadata value (a server's alias may
        /// hold one) is written `\n`, so that one event is one line and no value can forge
        /// another line (JSON escapes its own).
        let folds: Bool

        var logLevel: Logger.Level {
            get { levelSwitch.current }
            set {}  // the switch decides
        }

        var metadata: Logger.Metadata {
            get { base.metadata }
            set { base.metadata = folds ? newValue.mapValues(OneLine.value) : newValue }
        }

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { base[metadataKey: key] }
            set { base[metadataKey: key] = folds ? newValue.map(OneLine.value) : newValue }
        }

        func log(event: LogEvent) {
            guard folds else { return base.log(event: event) }
            var event = event
            event.message = "\(OneLine.text(event.message.description))"
            event.metadata = event.metadata?.mapValues(OneLine.value)
            base.log(event: event)
        }
    }

    /// Text log lines, one per event.
    enum OneLine {
        static func text(_ text: String) -> String {
            guard text.contains(where: \.isNewline) else { return text }
            return text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).joined(separator: "\\n")
        }

        static func value(_ value: Logger.Metadata.Value) -> Logger.Metadata.Value {
            switch value {
            case .string(let string): .string(text(string))
            case .stringConvertible(let convertible):
                "\(convertible)".contains(where: \.isNewline) ? .string(text("\(convertible)")) : value
            case .array(let values): .array(values.map(Self.value))
            case .dictionary(let values): .dictionary(values.mapValues(Self.value))
            }
        }
    }
}
