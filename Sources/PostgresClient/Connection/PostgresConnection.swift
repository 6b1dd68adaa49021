import CLibPQ
import Glibc
import Logging

/// One connection to a PostgreSQL server, over libpq's non-blocking API.
///
/// A connection has one owner: the task that created it (it is not `Sendable`, and its async
/// methods run on the caller's executor). Every wait for the server is a wait for socket
/// readiness on the process's `SocketReactor`, so a slow server never holds a thread of the
/// cooperative pool. Statements take an optional deadline; when it passes, or when the waiting
/// task is cancelled, a cancel request is sent to the server (off the pool), the statement's
/// remaining output is drained, and the connection is either usable again or closed.
///
/// Close it with `close()`.
public final class PostgresConnection {
    /// The `PGconn *`, nil once closed.
    var handle: OpaquePointer?
    /// Passwords of this connection, masked from libpq's messages while connecting (where a
    /// mistyped connection string could show one); empty once connected, when no message of
    /// libpq or the server can carry them.
    private(set) var secrets: [String]
    /// Where the server's notices and this connection's diagnostics go (for a while:
    /// `withLogger`).
    public private(set) var logger: Logger {
        didSet { noticeSink.logger = logger }
    }
    private let noticeSink: NoticeSink
    /// What the connection is doing (one statement at a time; COPY sub-protocols).
    var state = ConnectionState.idle
    /// Watches every wait for the server's answers (nil: none); see `SilenceWatch`.
    public var silenceWatch: SilenceWatch?

    private init(handle: OpaquePointer, secrets: [String], logger: Logger, noticeSink: NoticeSink) {
        self.handle = handle
        self.secrets = secrets
        self.logger = logger
        self.noticeSink = noticeSink
    }

    deinit {
        if let handle { PQfinish(handle) }
    }

    /// Runs `body` with the server's notices and this connection's diagnostics going to
    /// `logger`, then to where they went before: a pooled connection lent to a task logs under
    /// that task's name for the time of the loan, and no one else's.
    public func withLogger<T>(_ logger: Logger, _ body: () async throws -> T) async rethrows -> T {
        let previous = self.logger
        self.logger = logger
        defer { self.logger = previous }
        return try await body()
    }

    /// The executor of the thread that waits on every connection's socket. A task that does
    /// little but wait on connections (a worker) runs best there, with
    /// `withTaskExecutorPreference` or `addTask(executorPreference:)`: a socket's readiness then
    /// resumes it on that thread, without waking a thread of the cooperative pool for it. What
    /// runs there must not block: CPU work of any length belongs elsewhere.
    public static var socketExecutor: any TaskExecutor { SocketReactor.shared }

    // MARK: Connecting

    /// Opens a connection, failing at `configuration.connectTimeout` at the latest.
    ///
    /// Throws `PostgresError` (`.invalidConnectionString`, `.connectionFailed`, `.timedOut`) or
    /// `CancellationError`; no message ever contains a password of the configuration.
    public static func connect(
        _ configuration: ConnectionConfiguration,
        logger: Logger = Logger(label: "powa.postgres")
    ) async throws -> PostgresConnection {
        // Off the sockets' thread even for a task that prefers it: a connect's steps compute
        // (a TLS handshake, SCRAM's key derivation) and read files (.pgpass, the service file,
        // certificates), which would hold up every other session's I/O meanwhile.
        try await withTaskExecutorPreference(globalConcurrentExecutor) {
            try await connectOnPool(configuration, logger: logger)
        }
    }

    private static func connectOnPool(
        _ configuration: ConnectionConfiguration, logger: Logger
    ) async throws -> PostgresConnection {
        let secrets = configuration.secrets
        if let connectionString = configuration.connectionString {
            try validate(connectionString, secrets: secrets)
        }
        let deadline = ContinuousClock.now + configuration.connectTimeout
        let parameters = configuration.orderedParameters
        let expand = configuration.connectionString != nil
        // Only a host name's lookup blocks: without one, every step runs here, between waits
        // for the socket in the reactor; with one, each step runs on a thread of its own.
        let blocking = configuration.mayLookUpNames
        let start: OpaquePointer?
        if blocking {
            let started = await BlockingCall.run(until: deadline) {
                UnsafeTransfer(startConnecting(parameters, expandDatabaseName: expand))
            } abandoned: { started in
                if let handle = started.value { PQfinish(handle) }
            }
            start = try connectStep(started, timeout: configuration.connectTimeout).value
        } else {
            start = startConnecting(parameters, expandDatabaseName: expand)
        }
        guard let handle = start else {
            throw PostgresError(code: .connectionFailed, message: "out of memory allocating a connection")
        }
        let sink = NoticeSink(logger: logger)
        PQsetNoticeReceiver(handle, noticeReceiver, Unmanaged.passUnretained(sink).toOpaque())
        let connection = PostgresConnection(handle: handle, secrets: secrets, logger: logger, noticeSink: sink)
        do {
            try await connection.pollUntilConnected(
                deadline: deadline, timeout: configuration.connectTimeout, blocking: blocking)
        } catch {
            connection.close()
            throw error
        }
        connection.secrets = []
        PQsetnonblocking(handle, 1)
        return connection
    }

    private static func validate(_ connectionString: String, secrets: [String]) throws {
        var errorMessage: UnsafeMutablePointer<CChar>?
        if let options = PQconninfoParse(connectionString, &errorMessage) {
            PQconninfoFree(options)
            return
        }
        let message = errorMessage.map { String(cString: $0) } ?? "invalid connection string"
        if let errorMessage { PQfreemem(errorMessage) }
        throw PostgresError(code: .invalidConnectionString, message: message.trimmedMessage)
            .masking(secrets)
    }

    /// Only a connection string of the configuration file is expanded (`expand_dbname`): a
    /// database name from anywhere else is a name, so that a value such as
    /// `dbname=x host=elsewhere` cannot redirect the connection (and its password).
    private static func startConnecting(
        _ parameters: [ConnectionConfiguration.Parameter], expandDatabaseName: Bool
    ) -> OpaquePointer? {
        let keywords = parameters.map { strdup($0.keyword) } + [nil]
        let values = parameters.map { strdup($0.value) } + [nil]
        defer {
            keywords.forEach { free($0) }
            values.forEach { free($0) }
        }
        return keywords.map { UnsafePointer($0) }.withUnsafeBufferPointer { keywordPointers in
            values.map { UnsafePointer($0) }.withUnsafeBufferPointer { valuePointers in
                PQconnectStartParams(keywordPointers.baseAddress, valuePointers.baseAddress, expandDatabaseName ? 1 : 0)
            }
        }
    }

    private func pollUntilConnected(deadline: ContinuousClock.Instant, timeout: Duration, blocking: Bool) async throws {
        guard let handle else { throw closedError() }
        if PQstatus(handle) == CONNECTION_BAD { throw lastError(code: .connectionFailed) }
        var status = PGRES_POLLING_WRITING
        while true {
            switch status {
            case PGRES_POLLING_OK:
                return
            case PGRES_POLLING_FAILED:
                throw lastError(code: .connectionFailed)
            default:
                let events: SocketEvents = status == PGRES_POLLING_READING ? .read : .write
                switch await SocketReactor.shared.wait(fd: PQsocket(handle), for: events, deadline: deadline) {
                case .ready: break
                case .timedOut: throw Self.connectTimedOut(timeout)
                case .cancelled: throw CancellationError()
                }
                guard blocking else {
                    status = PQconnectPoll(handle)
                    continue
                }
                let transfer = UnsafeTransfer(handle)
                let sink = UnsafeTransfer(noticeSink)
                let polled = await BlockingCall.run(until: deadline) {
                    PQconnectPoll(transfer.value)
                } abandoned: { _ in
                    // The step's thread owns the connection now; the sink its notice receiver
                    // points to lives until the connection is finished.
                    withExtendedLifetime(sink.value) { PQfinish(transfer.value) }
                }
                switch polled {
                case .finished(let next):
                    status = next
                case .overloaded:
                    // Not run: the connection is still ours (the caller closes it).
                    status = try Self.connectStep(polled, timeout: timeout)
                case .timedOut, .cancelled:
                    // The step's thread finishes the connection.
                    self.handle = nil
                    state.close()
                    status = try Self.connectStep(polled, timeout: timeout)
                }
            }
        }
    }

    /// The result of a blocking connect step, or the error of a step its caller stopped
    /// waiting for.
    private static func connectStep<Result>(
        _ outcome: BlockingCall.Outcome<Result>, timeout: Duration
    ) throws -> Result {
        switch outcome {
        case .finished(let result): return result
        case .timedOut: throw connectTimedOut(timeout)
        case .cancelled: throw CancellationError()
        case .overloaded:
            throw PostgresError(
                code: .timedOut,
                message:
                    "could not connect within \(timeout): the \(BlockingCall.Slots.shared.maximum) threads for connection steps (host name lookups) stayed busy: is the DNS server answering?"
            )
        }
    }

    private static func connectTimedOut(_ timeout: Duration) -> PostgresError {
        PostgresError(code: .timedOut, message: "could not connect within \(timeout)")
    }

    /// How long the cleanup after a failure may take (a cancel request and the drain of the
    /// statement's output, a ROLLBACK, the end of an abandoned COPY): a live server answers in
    /// milliseconds, and a session that does not is closed, a new one costing a few. It bounds
    /// how long a blackholed server delays the report of a failure.
    static let cleanupGrace: Duration = .seconds(2)

    // MARK: State

    /// Whether `close()` was called or the connection was dropped after a failed cleanup.
    public var isClosed: Bool { handle == nil }

    /// Whether the connection is open and libpq considers it healthy.
    public var isHealthy: Bool {
        guard let handle else { return false }
        return PQstatus(handle) == CONNECTION_OK
    }

    /// Reads what the server sent while the connection was idle, and tells whether it is still
    /// healthy: a server that restarted or terminated the session has sent its last message
    /// and closed the socket, which `isHealthy` alone does not see until the next statement.
    /// Does not wait.
    public func probe() -> Bool {
        guard let handle else { return false }
        // Twice: a server that ends a session sends its FATAL message (which libpq hands to the
        // notice receiver when idle) and then closes; the end of the stream is seen by the read
        // after the one that consumed the message.
        for _ in 0..<2 where state == .idle && PQstatus(handle) == CONNECTION_OK {
            if PQconsumeInput(handle) == 0 { return false }
        }
        return PQstatus(handle) == CONNECTION_OK
    }

    /// The process id of the server backend serving this connection.
    public var backendPID: Int32 { handle.map { PQbackendPID($0) } ?? 0 }

    /// The server's version as an integer, e.g. 150018 for 15.18.
    public var serverVersionNumber: Int { handle.map { Int(PQserverVersion($0)) } ?? 0 }

    /// The transaction state of the session.
    public var transactionStatus: TransactionStatus {
        guard let handle else { return .unknown }
        switch PQtransactionStatus(handle) {
        case PQTRANS_IDLE: return .idle
        case PQTRANS_ACTIVE: return .active
        case PQTRANS_INTRANS: return .inTransaction
        case PQTRANS_INERROR: return .failedTransaction
        default: return .unknown
        }
    }

    /// Closes the connection (idempotent).
    public func close() {
        guard let handle else { return }
        PQfinish(handle)
        self.handle = nil
        state.close()
    }

    // MARK: Errors

    func closedError() -> PostgresError {
        PostgresError(code: .connectionClosed, message: "the connection is closed")
    }

    /// The connection's last libpq error (secrets masked while connecting).
    func lastError(code: PostgresError.Code) -> PostgresError {
        let message = handle.flatMap { PQerrorMessage($0) }.map { String(cString: $0) } ?? ""
        let text = message.trimmedMessage.isEmpty ? "connection failed" : message.trimmedMessage
        return PostgresError(code: code, message: text).masking(secrets)
    }
}

/// The transaction state of a session, from libpq.
public enum TransactionStatus: Sendable {
    case idle, active, inTransaction, failedTransaction, unknown
}

extension String {
    /// A libpq message on one line: libpq ends its messages with a newline and spreads some
    /// over several (`...unexpectedly\n\tThis probably means...`), while a log has one line per
    /// event. Lines are joined with a space.
    var trimmedMessage: String {
        split(whereSeparator: \.isNewline)
            .map { $0.trimmingPrefix(while: { $0 == "\t" || $0 == " " }) }
            .filter { !$0.isEmpty }
            .joined(separator: " ")
    }
}
