import Glibc
import Logging
import Synchronization

/// Writes each log event to stderr as one JSON object on one line: `time` (UTC, ISO 8601,
/// milliseconds), `level`, `message`, then the event's metadata as fields of their own
/// (`worker`, `srvid`, `error`, `source`, `seconds`...), so that a log pipeline can filter on
/// them without parsing messages. A metadata key that would hide one of the first three is
/// written with a `metadata_` prefix.
struct JSONLogHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    /// One writer for the process: a line is written whole, never interleaved with another.
    private static let output = Mutex(())

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var fields = metadata
        if let extra = event.metadata { fields.merge(extra) { $1 } }
        let line = Self.line(time: Self.now(), level: event.level, message: "\(event.message)", metadata: fields)
        Self.output.withLock { _ in
            line.utf8CString.withUnsafeBufferPointer { buffer in
                var offset = 0
                let count = buffer.count - 1  // without the final NUL
                while offset < count {
                    let written = write(2, buffer.baseAddress! + offset, count - offset)
                    if written < 0 && errno == EINTR { continue }
                    if written <= 0 { return }
                    offset += written
                }
            }
        }
    }

    /// The JSON line of an event, newline included.
    static func line(time: String, level: Logger.Level, message: String, metadata: Logger.Metadata) -> String {
        var line = "{\"time\":"
        appendString(time, to: &line)
        line += ",\"level\":"
        appendString(level.rawValue, to: &line)
        line += ",\"message\":"
        appendString(message, to: &line)
        for key in metadata.keys.sorted() {
            line += ","
            appendString(["time", "level", "message"].contains(key) ? "metadata_" + key : key, to: &line)
            line += ":"
            appendValue(metadata[key]!, to: &line)
        }
        return line + "}\n"
    }

    private static func appendValue(_ value: Logger.MetadataValue, to line: inout String) {
        switch value {
        case .string(let text): appendString(text, to: &line)
        case .stringConvertible(let convertible): appendString(convertible.description, to: &line)
        case .array(let values):
            line += "["
            for (index, element) in values.enumerated() {
                if index > 0 { line += "," }
                appendValue(element, to: &line)
            }
            line += "]"
        case .dictionary(let dictionary):
            line += "{"
            for (index, key) in dictionary.keys.sorted().enumerated() {
                if index > 0 { line += "," }
                appendString(key, to: &line)
                line += ":"
                appendValue(dictionary[key]!, to: &line)
            }
            line += "}"
        }
    }

    /// A JSON string: quotes, backslashes and control characters escaped, the rest as is.
    static func appendString(_ text: String, to line: inout String) {
        line += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": line += "\\\""
            case "\\": line += "\\\\"
            case "\n": line += "\\n"
            case "\r": line += "\\r"
            case "\t": line += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7f || scalar.value == 0x2028 || scalar.value == 0x2029:
                let hex = String(scalar.value, radix: 16)
                line += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: line.unicodeScalars.append(scalar)
            }
        }
        line += "\""
    }

    /// The time now, e.g. `2026-11-29T16:00:00.123Z`.
    static func now() -> String {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        var parts = tm()
        var seconds = spec.tv_sec
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let milliseconds = Int(spec.tv_nsec / 1_000_000)
        let millisecondsText =
            milliseconds < 10 ? "00\(milliseconds)" : milliseconds < 100 ? "0\(milliseconds)" : "\(milliseconds)"
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T"
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(millisecondsText)Z"
    }
}
