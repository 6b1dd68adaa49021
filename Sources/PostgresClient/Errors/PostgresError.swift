/// An error from a PostgreSQL connection: what failed, and what the server said about it.
///
/// `description` is one line safe for any log: it carries libpq's or the server's message
/// (passwords masked where libpq can show them: connection strings and connecting), and never
/// a connection string. A cancelled task gets `CancellationError`, not this. Match on the kind
/// of failure with `code` (`case .timedOut = error.code` or `PostgresError.Code.timedOut ~= error`)
/// and on the server's condition with `sqlState` (e.g. `"42P01"`, undefined table).
public struct PostgresError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The kind of failure, extensible without breaking users.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case invalidConnectionString, connectionFailed, connectionClosed, server, timedOut
            case copyFailed, misuse
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The connection string or a parameter was refused by libpq before connecting.
        public static let invalidConnectionString = Code(.invalidConnectionString)
        /// The connection could not be established (refused, authentication, TLS, ...).
        public static let connectionFailed = Code(.connectionFailed)
        /// An established connection was lost or closed.
        public static let connectionClosed = Code(.connectionClosed)
        /// The server reported an error for a statement; see `sqlState`.
        public static let server = Code(.server)
        /// A deadline passed; the statement was cancelled on the server.
        public static let timedOut = Code(.timedOut)
        /// A COPY stream failed on the client side.
        public static let copyFailed = Code(.copyFailed)
        /// The API was used out of order (e.g. two statements at once on one connection).
        public static let misuse = Code(.misuse)

        public var description: String { base.rawValue }

        /// Whether `error` is a `PostgresError` of this code.
        public static func ~= (code: Code, error: any Error) -> Bool {
            (error as? PostgresError)?.code == code
        }
    }

    /// What kind of failure this is.
    public var code: Code
    /// The SQLSTATE the server sent, for `.server` errors (and some connection failures).
    public var sqlState: String?
    /// The primary message, from libpq or the server, secrets masked.
    public var message: String
    /// The server's DETAIL, if any.
    public var detail: String?
    /// The server's HINT, if any.
    public var hint: String?

    public init(
        code: Code,
        message: String,
        sqlState: String? = nil,
        detail: String? = nil,
        hint: String? = nil
    ) {
        self.code = code
        self.message = message
        self.sqlState = sqlState
        self.detail = detail
        self.hint = hint
    }

    public var description: String {
        var text = sqlState.map { "\($0): \(message)" } ?? message
        if let detail { text += " (detail: \(detail))" }
        if let hint { text += " (hint: \(hint))" }
        return text
    }

    public var debugDescription: String {
        "PostgresError(code: \(code), sqlState: \(sqlState ?? "nil"), message: \(String(reflecting: message)), "
            + "detail: \(detail.map { String(reflecting: $0) } ?? "nil"), hint: \(hint.map { String(reflecting: $0) } ?? "nil"))"
    }

    /// Whether `error` is a `PostgresError` carrying this SQLSTATE.
    public static func ~= (sqlState: String, error: PostgresError) -> Bool {
        error.sqlState == sqlState
    }

    /// Masks every occurrence of each secret in the texts of this error.
    func masking(_ secrets: [String]) -> PostgresError {
        var copy = self
        copy.message = Secrets.mask(message, secrets)
        copy.detail = detail.map { Secrets.mask($0, secrets) }
        copy.hint = hint.map { Secrets.mask($0, secrets) }
        return copy
    }
}
