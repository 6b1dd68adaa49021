/// What the members of a fleet tell each other on `powa_collector_fleet` (a channel powa-web
/// never listens to), so that the leader can answer powa-web for the whole fleet:
///
/// - `S <member> <srvid>:<status>,...`: the statuses of servers the member snapshots (each a
///   `WorkerStatus` by its index), only those that changed, in as many messages as the
///   8000-byte NOTIFY limit needs;
/// - `R <channel> <answer>`: a member's answer to a FORCE_SNAPSHOT or REFRESH_DB_CAT for a
///   server it owns, for the leader to send on powa-web's channel;
/// - `T`: the server list changed (a reload): every member looks at the fleet now rather than
///   at its next tick.
///
/// Anything else (an older or newer collector's message) is ignored.
enum FleetMessage: Equatable, Sendable {
    case statuses(member: Int, [Int: WorkerStatus])
    case answer(channel: String, payload: String)
    case tickNow

    static let channel = "powa_collector_fleet"

    /// Payloads stay under this many bytes (NOTIFY's limit is 8000).
    static let maximumBytes = 7900

    init?(payload: String) {
        if payload == Self.tickNowPayload {
            self = .tickNow
            return
        }
        let words = payload.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard words.count == 3 else { return nil }
        switch words[0] {
        case "S":
            guard let member = Int(words[1]) else { return nil }
            var statuses: [Int: WorkerStatus] = [:]
            for entry in words[2].split(separator: ",") {
                let parts = entry.split(separator: ":")
                guard parts.count == 2, let server = Int(parts[0]), let code = Int(parts[1]),
                    WorkerStatus.allCases.indices.contains(code)
                else { return nil }
                statuses[server] = WorkerStatus.allCases[code]
            }
            self = .statuses(member: member, statuses)
        case "R":
            self = .answer(channel: String(words[1]), payload: String(words[2]))
        default:
            return nil
        }
    }

    /// The payloads that carry a member's statuses, each under `maximumBytes`.
    static func statusPayloads(member: Int, _ statuses: [Int: WorkerStatus]) -> [String] {
        let head = "S \(member) "
        var payloads: [String] = []
        var current = head
        for (server, status) in statuses.sorted(by: { $0.key < $1.key }) {
            let code = WorkerStatus.allCases.firstIndex(of: status) ?? 0
            let entry = "\(server):\(code)"
            if current.utf8.count + entry.utf8.count + 1 > maximumBytes {
                payloads.append(current)
                current = head
            }
            current += current == head ? entry : ",\(entry)"
        }
        if current != head { payloads.append(current) }
        return payloads
    }

    /// The payload of `tickNow`.
    static let tickNowPayload = "T"

    /// The payload of a relayed answer.
    static func answerPayload(channel: String, payload: String) -> String { "R \(channel) \(payload)" }
}
