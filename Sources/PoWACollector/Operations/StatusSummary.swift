/// The one-line summary of the workers that `systemctl status` shows (`STATUS=`): e.g.
/// `12 servers: 11 running, 1 no connection to remote server`, the most common status first.
enum StatusSummary {
    static func line(_ statuses: [Int: WorkerStatus], spooled: SpoolContents? = nil) -> String {
        var counts: [WorkerStatus: Int] = [:]
        for status in statuses.values { counts[status, default: 0] += 1 }
        let parts = counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key.rawValue < $1.key.rawValue }
            .map { "\($0.value) \($0.key.rawValue)" }
        let servers = "\(statuses.count) server\(statuses.count == 1 ? "" : "s")"
        let line = parts.isEmpty ? servers : servers + ": " + parts.joined(separator: ", ")
        guard let spooled else { return line }
        return line + "; " + spooled.description
    }
}

/// What waits in the spool: `spooling 36 snapshots (12.5 MB)`.
public struct SpoolContents: Sendable, Equatable, CustomStringConvertible {
    public let snapshots: Int
    public let bytes: Int

    public var description: String {
        let megabytes = (Double(bytes) / 1_000_000 * 10).rounded() / 10
        return "spooling \(snapshots) snapshot\(snapshots == 1 ? "" : "s") (\(megabytes) MB)"
    }
}
