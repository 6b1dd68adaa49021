/// What a connection is doing, as one value that changes only through the transitions below.
///
/// libpq allows one statement at a time per connection, and a COPY is a sub-protocol in which
/// only COPY calls are valid: every public call of `PostgresConnection` first asks this state
/// whether it may run, and the code that talks to libpq reports what happened through a
/// transition. Kept apart from libpq so that the rules are tested without a server, as
/// postgres-nio does with its connection state machine.
enum ConnectionState: Equatable, Sendable {
    /// Connected, nothing in flight: a statement may start.
    case idle
    /// A statement was sent; its results are being read.
    case statement
    /// A `COPY ... TO STDOUT` streams its rows.
    case copyOut
    /// A `COPY ... TO STDOUT` whose rows have ended; its final result is still to be read.
    case copyOutEnded
    /// A `COPY ... FROM STDIN` takes rows.
    case copyIn
    /// A statement was given up (deadline, cancellation, failure of the other side of a pipe):
    /// a cancel request is on its way and its output is being drained.
    case cleaningUp
    /// Closed by its owner or after a failed cleanup; final.
    case closed

    /// Why a call cannot run in this state, or nil when it may.
    private func refusal(_ call: String, allowedIn allowed: Set<ConnectionState>) -> PostgresError? {
        if allowed.contains(self) { return nil }
        switch self {
        case .closed:
            return PostgresError(code: .connectionClosed, message: "the connection is closed")
        case .copyOut, .copyOutEnded, .copyIn:
            return PostgresError(code: .misuse, message: "\(call): a COPY is in progress on this connection")
        case .idle:
            return PostgresError(code: .misuse, message: "\(call): no COPY in progress")
        case .statement, .cleaningUp:
            return PostgresError(code: .misuse, message: "\(call): another statement is in progress on this connection")
        }
    }

    // MARK: Calls of the owner

    /// A statement starts (`query`, `execute`, `startCopyIn`...).
    mutating func beginStatement() throws(PostgresError) {
        if let refusal = refusal("statement", allowedIn: [.idle]) { throw refusal }
        self = .statement
    }

    /// The connection waits for notifications, or checks its socket while idle.
    func requireIdle(_ call: String) throws(PostgresError) {
        if let refusal = refusal(call, allowedIn: [.idle]) { throw refusal }
    }

    /// Rows of a COPY TO STDOUT are read (including the final result once they ended).
    func requireCopyOut() throws(PostgresError) {
        if let refusal = refusal("readCopyData", allowedIn: [.copyOut, .copyOutEnded]) { throw refusal }
    }

    /// Rows of a COPY FROM STDIN are sent, or the COPY is ended.
    func requireCopyIn(_ call: String) throws(PostgresError) {
        if let refusal = refusal(call, allowedIn: [.copyIn]) { throw refusal }
    }

    // MARK: What libpq reported

    /// The statement turned into a COPY (`PGRES_COPY_OUT`, `PGRES_COPY_IN`).
    mutating func copyStarted(out: Bool) {
        assert(self == .statement, "COPY started in state \(self)")
        self = out ? .copyOut : .copyIn
    }

    /// `PQgetCopyData` returned -1: the rows have ended.
    mutating func copyOutRowsEnded() {
        assert(self == .copyOut, "COPY rows ended in state \(self)")
        self = .copyOutEnded
    }

    /// The final result of an ended COPY TO STDOUT is read next, as a statement's.
    mutating func readingCopyOutResult() {
        assert(self == .copyOutEnded, "COPY result read in state \(self)")
        self = .statement
    }

    /// A COPY FROM STDIN is ended (`PQputCopyEnd`, or the server refused its rows); its result
    /// is read next, as a statement's.
    mutating func endingCopyIn() {
        assert(self == .copyIn, "COPY FROM STDIN ended in state \(self)")
        self = .statement
    }

    /// A COPY's stream broke: libpq reports the connection lost, nothing is in flight any more.
    mutating func copyLost() {
        if self != .closed { self = .idle }
    }

    /// The statement is over: all its results are read. A no-op when it turned into a COPY,
    /// was cleaned up, or the connection closed meanwhile.
    mutating func statementEnded() {
        if self == .statement { self = .idle }
    }

    /// The statement in flight (or COPY) is given up; returns what was in flight, which tells
    /// the cleanup what to drain. Nil when nothing was (idle, closed, or already cleaning up).
    mutating func abandon() -> ConnectionState? {
        switch self {
        case .statement, .copyOut, .copyOutEnded, .copyIn:
            let inFlight = self
            self = .cleaningUp
            return inFlight
        case .idle, .cleaningUp, .closed:
            return nil
        }
    }

    /// The cleanup drained everything: the connection is usable again.
    mutating func cleanedUp() {
        assert(self == .cleaningUp, "cleanup ended in state \(self)")
        if self == .cleaningUp { self = .idle }
    }

    /// The connection is closed (idempotent).
    mutating func close() {
        self = .closed
    }
}
