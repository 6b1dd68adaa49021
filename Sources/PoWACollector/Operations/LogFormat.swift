/// How the daemon writes its log (`log_format`, or `--log-format`): lines of text for a
/// terminal or a file, or one JSON object per line for journald, Loki or Elasticsearch. Both
/// write one line per event.
public enum LogFormat: String, Sendable, CaseIterable {
    case text
    case json
}
