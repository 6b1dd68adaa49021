/// Transactions have one owner: `inTransaction` opens one, commits it when its body returns,
/// and ends it whatever happens otherwise (an error, a deadline, a task cancellation), so no
/// caller ever leaves a session `idle in transaction`.
extension PostgresConnection {
    /// How long past its deadline a transaction may sit idle on the server before the server
    /// ends the session (see `inTransaction`).
    public static let idleTransactionGrace = Duration.seconds(10)

    /// Runs `body` between `begin` (e.g. `BEGIN` or `BEGIN ISOLATION LEVEL REPEATABLE READ`) and
    /// `COMMIT`. When `body` or the commit throws, the transaction is rolled back, or the
    /// connection is closed when it cannot be (which the server takes as a rollback), and the
    /// error is rethrown.
    ///
    /// With a deadline, the server bounds the transaction's idle time too: the same round trip
    /// as `begin` sets `idle_in_transaction_session_timeout` for this transaction to the time
    /// left until the deadline plus `idleGrace`. A live process ends the transaction by its
    /// deadline anyway; a frozen one (SIGSTOP, a stalled VM, a debugger) cannot, and would
    /// otherwise hold its locks and the server's xmin horizon (vacuum) for as long as it stays
    /// frozen: the server ends the session instead.
    public func inTransaction<T>(
        _ begin: String = "BEGIN",
        deadline: ContinuousClock.Instant?,
        idleGrace: Duration = idleTransactionGrace,
        _ body: () async throws -> T
    ) async throws -> T {
        do {
            // Inside: a BEGIN that ran but whose answer came too late leaves a transaction open.
            try await execute(begin + Self.idleBound(until: deadline, grace: idleGrace), deadline: deadline)
            let value = try await body()
            try await execute("COMMIT", deadline: deadline)
            return value
        } catch {
            await endTransaction()
            throw error
        }
    }

    /// The statement that follows `begin` in `inTransaction`'s first round trip (none without
    /// a deadline).
    static func idleBound(until deadline: ContinuousClock.Instant?, grace: Duration) -> String {
        guard let deadline else { return "" }
        return "; " + idleLimitStatement(idleLimit(until: deadline, grace: grace))
    }

    /// Sets how long the current transaction may sit idle from now on (until it ends, or until
    /// the savepoint it is set in is rolled back).
    public func limitIdleTime(to limit: Duration, deadline: ContinuousClock.Instant?) async throws {
        try await execute(Self.idleLimitStatement(limit), deadline: deadline)
    }

    /// The idle limit `inTransaction` sets at BEGIN: the time left until `deadline`, plus `grace`.
    public static func idleLimit(until deadline: ContinuousClock.Instant, grace: Duration = idleTransactionGrace)
        -> Duration
    {
        max(deadline - .now, .zero) + grace
    }

    private static func idleLimitStatement(_ limit: Duration) -> String {
        "SET LOCAL idle_in_transaction_session_timeout = \(timeoutMilliseconds(limit))"
    }

    /// A duration as the value of a timeout setting: whole milliseconds within the settings'
    /// range, 1 to INT_MAX (0 would mean no limit at all).
    public static func timeoutMilliseconds(_ duration: Duration) -> Int64 {
        let clamped = min(max(duration, .milliseconds(1)), .milliseconds(Int64(Int32.max)))
        return clamped.components.seconds * 1000 + clamped.components.attoseconds / 1_000_000_000_000_000
    }

    /// Runs `body` inside `SAVEPOINT name`: released when it returns; when it throws, its work is
    /// rolled back to the savepoint (the enclosing transaction goes on) and the error rethrown.
    /// Check `canContinueTransaction` before going on after an error.
    ///
    /// `name` is an identifier of the caller's, never input.
    public func inSavepoint<T>(
        _ name: StaticString,
        deadline: ContinuousClock.Instant?,
        _ body: () async throws -> T
    ) async throws -> T {
        try await execute("SAVEPOINT \(name)", deadline: deadline)
        do {
            let value = try await body()
            try await execute("RELEASE SAVEPOINT \(name)", deadline: deadline)
            return value
        } catch {
            if !Task.isCancelled, isHealthy, transactionStatus != .active {
                try? await execute("ROLLBACK TO SAVEPOINT \(name); RELEASE SAVEPOINT \(name)", deadline: deadline)
            }
            throw error
        }
    }

    /// One statement inside `SAVEPOINT name`, as one simple query: `SAVEPOINT name; sql;
    /// RELEASE SAVEPOINT name`. For a statement whose failure must undo only itself (a COPY of
    /// one snapshot source, say) at the cost of one round trip instead of three: the server
    /// skips the `RELEASE` when `sql` fails, and the caller then calls `rollBackToSavepoint`.
    /// `sql` is one statement without a `;` of its own; `name` is an identifier of the caller's.
    public static func inSavepoint(_ name: StaticString, _ sql: String) -> String {
        "SAVEPOINT \(name); \(sql); RELEASE SAVEPOINT \(name)"
    }

    /// After a statement of `inSavepoint(_:_:)` failed: undoes its work, rolling the
    /// transaction back to the savepoint, when the failure left the transaction in error. A
    /// session whose statement completed (the savepoint released) is left alone, as is one
    /// that cannot take it (broken, cancelled task): the caller sees that with
    /// `canContinueTransaction`.
    public func rollBackToSavepoint(_ name: StaticString, deadline: ContinuousClock.Instant?) async {
        guard !Task.isCancelled, isHealthy, transactionStatus == .failedTransaction else { return }
        try? await execute("ROLLBACK TO SAVEPOINT \(name); RELEASE SAVEPOINT \(name)", deadline: deadline)
    }

    /// Whether the session is healthy and inside a transaction that can still commit.
    public var canContinueTransaction: Bool {
        isHealthy && transactionStatus == .inTransaction
    }

    /// Ends the current transaction, if any: `ROLLBACK` when the session can take it, else the
    /// connection is closed. Never waits in a way a task cancellation cuts short.
    public func endTransaction() async {
        guard isHealthy else {
            close()
            return
        }
        switch transactionStatus {
        case .idle:
            return
        case .inTransaction, .failedTransaction:
            guard !Task.isCancelled else { break }
            if (try? await execute("ROLLBACK", deadline: .now + Self.cleanupGrace)) != nil, transactionStatus == .idle {
                return
            }
        case .active, .unknown:
            break
        }
        close()
    }
}
