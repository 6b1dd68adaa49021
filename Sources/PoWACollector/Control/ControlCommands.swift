/// What each command of the protocol does, and the answer it gets.
///
/// - `RELOAD`: reload the configuration and the server list (also without a channel).
/// - `WORKERS_STATUS [srvid]`: `{"<srvid>": "<status>", ...}`, `{}` for an unknown srvid.
/// - `FORCE_SNAPSHOT srvid`: a snapshot now, unless one runs, one is already requested, or the
///   last one started less than 10 s ago.
/// - `REFRESH_DB_CAT srvid n [dbname...]` (PoWA 5): the catalogs of the `n` named databases
///   (0: all) at the server's next snapshot. powa-web splits nothing: a single database name
///   with spaces arrives as several words, and is taken back as one name when `n` is 1.
/// - anything else: `UNKNOWN`. Malformed arguments: `ERROR`.
public struct ControlCommands: Sendable {
    let board: WorkerBoard

    public init(board: WorkerBoard) {
        self.board = board
    }

    /// Carries out a request and returns its answer; nil for RELOAD, which the reload it asks
    /// for answers once done (`reply(toReload:)`). `statuses` are WORKERS_STATUS's, of one
    /// server or all (in a fleet, every member's workers).
    public func answer(_ request: ControlRequest, statuses: (Int?) -> [Int: WorkerStatus]) -> ControlReply? {
        let command = request.command
        func reply(_ status: ControlReply.Status, _ data: String) -> ControlReply {
            ControlReply(command: command, status: status, data: data)
        }
        switch command {
        case "RELOAD":
            return nil
        case "WORKERS_STATUS":
            guard request.arguments.count <= 1 else { return reply(.error, "Command \"\(command)\" malformed") }
            var serverID: Int?
            if let argument = request.arguments.first {
                guard let id = Self.serverID(argument) else { return reply(.error, "invalid remote server id") }
                serverID = id
            }
            return reply(.ok, Self.json(statuses(serverID)))
        case "FORCE_SNAPSHOT":
            guard request.arguments.count == 1 else { return reply(.error, "Command \"\(command)\" malformed") }
            guard let id = Self.serverID(request.arguments[0]) else { return reply(.error, "invalid remote server id") }
            do {
                try board.forceSnapshot(serverID: id)
                return reply(.ok, "Snapshot will begin shortly")
            } catch {
                switch error {
                case .unknownServer: return reply(.error, "Server id \(id) not found")
                case .snapshotRunning: return reply(.error, "A snapshot is already in progress")
                case .alreadyRequested: return reply(.error, "A forced snapshot is already scheduled")
                case .tooSoon: return reply(.error, "Last snapshot was less than 10s. ago")
                case .notRunning(let status): return reply(.error, "No snapshot possible now: the worker is \(status.rawValue)")
                }
            }
        case "REFRESH_DB_CAT":
            let arguments = request.arguments
            guard arguments.count >= 2 else { return reply(.error, "Command \"\(command)\" malformed") }
            guard let id = Self.serverID(arguments[0]) else { return reply(.error, "invalid remote server id") }
            guard let count = Self.serverID(arguments[1]) else { return reply(.error, "invalid number of databases") }
            let names = Array(arguments.dropFirst(2))
            let refresh: CatalogRefresh
            switch (count, names.count) {
            case (0, _): refresh = .all
            case (let wanted, let found) where wanted == found: refresh = .databases(Set(names))
            case (1, let found) where found > 1: refresh = .databases([names.joined(separator: " ")])
            default: return reply(.error, "Caller asked for \(count) db, but found \(names.count)")
            }
            guard board.requestCatalogRefresh(refresh, serverID: id) else {
                return reply(.error, "Server id \(id) not found")
            }
            return reply(.ok, "Catalogs will be refreshed during the next snapshot")
        default:
            return reply(.unknown, "Message \"\(command)\" invalid, command ignored")
        }
    }

    /// RELOAD's answer: what its reload did.
    public static func reply(toReload outcome: ReloadOutcome) -> ControlReply {
        func reply(_ status: ControlReply.Status, _ data: String) -> ControlReply {
            ControlReply(command: "RELOAD", status: status, data: data)
        }
        switch outcome {
        case .reloaded: return reply(.ok, "OK")
        case .configurationRejected(let why): return reply(.error, "configuration file rejected, the running one kept: \(why)")
        case .serverListUnread: return reply(.error, "could not read the server list from the repository")
        case .interrupted: return reply(.error, "the collector is stopping")
        }
    }

    /// A server id: digits only, within range.
    static func serverID(_ text: String) -> Int? {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), text.utf8.count <= 9 else { return nil }
        return Int(text)
    }

    /// The statuses as the Python collector's `json.dumps` writes them, by server id.
    static func json(_ statuses: [Int: WorkerStatus]) -> String {
        "{"
            + statuses.sorted { $0.key < $1.key }.map { "\"\($0.key)\": \"\($0.value.rawValue)\"" }
            .joined(separator: ", ") + "}"
    }
}
