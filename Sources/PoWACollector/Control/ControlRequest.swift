/// A request from powa-web (or a DBA) in a NOTIFY on `powa_collector`:
/// `COMMAND RESPONSE_CHANNEL [ARGS...]`, space separated.
///
/// A payload is data: it is split here and never pasted into SQL. Runs of spaces count as one
/// separator; a missing channel is `-`, which means "no answer".
public struct ControlRequest: Sendable, Equatable {
    public let command: String
    public let channel: String
    public let arguments: [String]

    public init(payload: String) {
        var words = payload.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        command = words.isEmpty ? "" : words.removeFirst()
        channel = words.isEmpty ? "-" : words.removeFirst()
        arguments = words
    }

    /// Whether the sender wants an answer.
    public var wantsReply: Bool { channel != "-" }
}

/// The answer to a request: `COMMAND STATUS DATA`, sent on the request's channel.
public struct ControlReply: Sendable, Equatable {
    /// The status words of the protocol.
    public enum Status: String, Sendable {
        case ok = "OK"
        case error = "ERROR"
        case unknown = "UNKNOWN"
        case ko = "KO"
    }

    /// NOTIFY payloads must stay under 8000 bytes.
    public static let maximumBytes = 8000

    public let command: String
    public let status: Status
    public let data: String

    /// An answer as it arrives (`COMMAND STATUS DATA`); an unknown status reads as `KO`.
    public init(payload: String) {
        let words = payload.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
        command = words.first ?? ""
        status = words.count > 1 ? Status(rawValue: words[1]) ?? .ko : .ko
        data = words.count > 2 ? words[2] : ""
    }

    public init(command: String, status: Status, data: String) {
        self.command = command
        self.status = status
        self.data = data
    }

    /// The payload to send: too long an answer becomes a short `KO`, and a hostile command
    /// name is cut so that even that stays short.
    public var payload: String {
        let full = "\(command) \(status.rawValue) \(data)"
        if full.utf8.count < Self.maximumBytes { return full }
        let name = command.utf8.count <= 64 ? command : String(decoding: command.utf8.prefix(64), as: UTF8.self)
        return "\(name) \(Status.ko.rawValue) answer too long"
    }
}
