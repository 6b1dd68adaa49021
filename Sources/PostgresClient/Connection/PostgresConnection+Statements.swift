import CLibPQ
import Glibc

extension PostgresConnection {
    /// Runs one statement with text parameters (`$1`, `$2`, ...; nil is NULL) and returns its
    /// result. The statement is cancelled on the server when `deadline` passes (throwing
    /// `.timedOut`) or the task is cancelled (throwing `CancellationError`).
    public func query(
        _ sql: String,
        _ parameters: [String?] = [],
        deadline: ContinuousClock.Instant? = nil
    ) async throws -> QueryResult {
        let results = try await run(deadline: deadline) { handle in
            sendQueryParams(handle, sql, parameters)
        }
        guard let last = results.last else {
            throw PostgresError(code: .misuse, message: "the statement returned no result")
        }
        return last
    }

    /// Runs one or more `;`-separated statements without parameters (the simple query
    /// protocol), e.g. `BEGIN` or `SET lock_timeout = '2s'; LISTEN x`.
    public func execute(_ sql: String, deadline: ContinuousClock.Instant? = nil) async throws {
        _ = try await run(deadline: deadline) { handle in PQsendQuery(handle, sql) }
    }

    /// Runs one or more `;`-separated statements without parameters and returns every result,
    /// in order (e.g. a few `SET` and a `SELECT` in one round trip).
    public func results(of sql: String, deadline: ContinuousClock.Instant? = nil) async throws -> [QueryResult] {
        try await run(deadline: deadline) { handle in PQsendQuery(handle, sql) }
    }

    /// Sends a statement, waits for all its results, and returns them; a failed one is thrown
    /// once the connection is idle again.
    func run(
        deadline: ContinuousClock.Instant?,
        send: (OpaquePointer) -> Int32
    ) async throws -> [QueryResult] {
        let handle = try beginStatement()
        defer { state.statementEnded() }
        guard send(handle) == 1 else { throw lastError(code: .connectionClosed) }
        try await flush(deadline: deadline)
        return try await collectResults(deadline: deadline)
    }

    /// Starts a statement, refusing a second one while one (or a COPY) is in flight.
    func beginStatement() throws -> OpaquePointer {
        guard let handle else { throw closedError() }
        try state.beginStatement()
        return handle
    }

    /// Writes libpq's output buffer to the server, waiting for the socket as needed. While it
    /// waits it also reads, so a server that answers before taking all our input cannot
    /// deadlock us.
    func flush(deadline: ContinuousClock.Instant?) async throws {
        guard let handle else { throw closedError() }
        while true {
            switch PQflush(handle) {
            case 0: return
            case 1:
                try await waitForSocket([.read, .write], deadline: deadline)
                guard PQconsumeInput(handle) == 1 else { throw lastError(code: .connectionClosed) }
            default: throw lastError(code: .connectionClosed)
            }
        }
    }

    /// Reads results until libpq has none left, or until the statement switches to COPY.
    func collectResults(deadline: ContinuousClock.Instant?) async throws -> [QueryResult] {
        guard let handle else { throw closedError() }
        var results: [QueryResult] = []
        var failure: PostgresError?
        while true {
            try await waitUntilNotBusy(deadline: deadline)
            guard let result = PQgetResult(handle) else { break }
            defer { PQclear(result) }
            switch PQresultStatus(result) {
            case PGRES_TUPLES_OK, PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
                results.append(PostgresResultFields.queryResult(result))
            case PGRES_COPY_OUT:
                state.copyStarted(out: true)
                return results
            case PGRES_COPY_IN:
                state.copyStarted(out: false)
                return results
            case PGRES_FATAL_ERROR, PGRES_NONFATAL_ERROR, PGRES_BAD_RESPONSE:
                failure = failure ?? PostgresResultFields.error(result)
            default:
                failure = failure ?? PostgresError(code: .misuse, message: "unexpected result status")
            }
        }
        if let failure { throw failure }
        if PQstatus(handle) == CONNECTION_BAD { throw lastError(code: .connectionClosed) }
        return results
    }

    /// Waits until libpq holds a whole result (or the end of the statement).
    func waitUntilNotBusy(deadline: ContinuousClock.Instant?) async throws {
        guard let handle else { throw closedError() }
        while PQisBusy(handle) == 1 {
            try await waitForSocket(.read, deadline: deadline)
            guard PQconsumeInput(handle) == 1 else { throw lastError(code: .connectionClosed) }
        }
    }

    /// Waits for the socket; on a deadline or a cancellation, cancels the statement on the
    /// server, drains it, and throws.
    func waitForSocket(_ events: SocketEvents, deadline: ContinuousClock.Instant?) async throws {
        guard let handle else { throw closedError() }
        let watch = events.contains(.read) ? silenceWatch : nil
        let waitBegan = ContinuousClock.now
        defer { watch?.waited(.now - waitBegan) }
        if let watch, !watch.hasFired {
            let silenceEnds = waitBegan + watch.limit
            if deadline.map({ silenceEnds < $0 }) ?? true {
                switch await SocketReactor.shared.wait(fd: PQsocket(handle), for: events, deadline: silenceEnds) {
                case .ready:
                    return
                case .cancelled:
                    await abandonStatement()
                    throw CancellationError()
                case .timedOut:
                    guard watch.fire() else {
                        giveUpOnSilentServer()
                        throw PostgresError(
                            code: .timedOut,
                            message: "the server sent nothing for \(watch.limit): statement given up")
                    }
                }
            }
        }
        switch await SocketReactor.shared.wait(fd: PQsocket(handle), for: events, deadline: deadline) {
        case .ready:
            return
        case .timedOut:
            await abandonStatement()
            throw PostgresError(code: .timedOut, message: "canceling statement: deadline reached")
        case .cancelled:
            await abandonStatement()
            throw CancellationError()
        }
    }

    /// A server that stays silent is not waited for: a cancel request goes to it (so that a
    /// backend still working ends its statement), and the connection is closed at once.
    private func giveUpOnSilentServer() {
        if let handle, state.abandon() != nil, let cancel = PQgetCancel(handle) { _ = CancelRequest(cancel) }
        close()
    }

    /// Sends a cancel request for the statement (or COPY) in flight and drains its output for
    /// up to `cleanupGrace`; the connection is then idle and usable, or closed. This never
    /// waits in a way a task cancellation could cut short.
    func abandonStatement() async {
        guard let handle, let inFlight = state.abandon() else { return }
        let request = PQgetCancel(handle).map { CancelRequest($0) }
        let deadline = ContinuousClock.now + Self.cleanupGrace
        let drained = await drain(inFlight, until: deadline)
        // A cancel request still on its way could land on the next statement of this session:
        // keep the connection only once the request is known to be over.
        let cancelOver = await request?.finished(before: deadline) ?? true
        if drained && cancelOver {
            state.cleanedUp()
        } else {
            logger.debug(
                "statement did not end after a cancel request; closing the connection",
                metadata: ["drained": "\(drained)", "cancel_over": "\(cancelOver)"])
            close()
        }
    }

    /// Consumes everything the server still sends for the statement that was `inFlight`, COPY
    /// data included (a statement may start several COPY in turn). Returns false when it could
    /// not (deadline, broken connection).
    private func drain(_ inFlight: ConnectionState, until deadline: ContinuousClock.Instant) async -> Bool {
        guard let handle else { return false }
        var current = inFlight
        while true {
            switch current {
            case .copyOut:
                var buffer: UnsafeMutablePointer<CChar>?
                let length = PQgetCopyData(handle, &buffer, 1)
                if let buffer { PQfreemem(buffer) }
                if length > 0 { continue }
                if length == 0 {
                    guard await waitQuietly(.read, until: deadline), PQconsumeInput(handle) == 1 else { return false }
                    continue
                }
                if length == -2 { return false }
            case .copyIn:
                guard PQputCopyEnd(handle, "canceled by the client") != -1 else { return false }
            default:
                break
            }
            current = .statement
            while PQflush(handle) == 1 {
                guard await waitQuietly([.read, .write], until: deadline), PQconsumeInput(handle) == 1 else { return false }
            }
            while PQisBusy(handle) == 1 {
                guard await waitQuietly(.read, until: deadline), PQconsumeInput(handle) == 1 else { return false }
            }
            guard let result = PQgetResult(handle) else { return PQstatus(handle) == CONNECTION_OK }
            switch PQresultStatus(result) {
            case PGRES_COPY_OUT: current = .copyOut
            case PGRES_COPY_IN: current = .copyIn
            case PGRES_COPY_BOTH:
                PQclear(result)
                return false
            default: break
            }
            PQclear(result)
        }
    }

    private func waitQuietly(_ events: SocketEvents, until deadline: ContinuousClock.Instant) async -> Bool {
        guard let handle else { return false }
        let outcome = await SocketReactor.shared.wait(
            fd: PQsocket(handle), for: events, deadline: deadline, cancellable: false)
        return outcome == .ready
    }
}

/// `PQsendQueryParams` with text parameters and text results.
private func sendQueryParams(_ handle: OpaquePointer, _ sql: String, _ parameters: [String?]) -> Int32 {
    guard !parameters.isEmpty else {
        return PQsendQueryParams(handle, sql, 0, nil, nil, nil, nil, 0)
    }
    let copies = parameters.map { $0.map { strdup($0) } ?? nil }
    defer { copies.forEach { free($0) } }
    return copies.map { UnsafePointer($0) }.withUnsafeBufferPointer { values in
        PQsendQueryParams(handle, sql, Int32(parameters.count), nil, values.baseAddress, nil, nil, 0)
    }
}
