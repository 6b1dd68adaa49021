import CLibPQ

/// Writes one row of a COPY stream, in COPY's text format and with its final newline, into the
/// batch being assembled (`appendTo`), changed or not. Called once per row as the rows arrive,
/// on the bytes libpq holds: the row is never copied, decoded or kept.
public typealias CopyRowRewrite = (_ row: UnsafeBufferPointer<UInt8>, _ appendTo: inout [UInt8]) -> Void

/// What a `pipeCopy` has sent so far (for metrics): bytes of COPY text written to the
/// destination. Owned by the task running the pipe.
public final class CopyProgress {
    public private(set) var bytes = 0
    public init() {}
    func sent(_ count: Int) { bytes += count }
}

extension PostgresConnection {
    /// Starts a `COPY ... TO STDOUT` statement; read its data with `readCopyData`.
    public func startCopyOut(_ sql: String, deadline: ContinuousClock.Instant? = nil) async throws {
        try await startCopy(sql, expecting: .copyOut, deadline: deadline)
    }

    /// Starts a `COPY ... FROM STDIN` statement; send data with `writeCopyData`, then end it
    /// with `finishCopyIn` or `abortCopyIn`.
    public func startCopyIn(_ sql: String, deadline: ContinuousClock.Instant? = nil) async throws {
        try await startCopy(sql, expecting: .copyIn, deadline: deadline)
    }

    private func startCopy(_ sql: String, expecting expected: ConnectionState, deadline: ContinuousClock.Instant?)
        async throws
    {
        let handle = try beginStatement()
        defer { state.statementEnded() }
        guard PQsendQuery(handle, sql) == 1 else { throw lastError(code: .connectionClosed) }
        try await flush(deadline: deadline)
        _ = try await collectResults(deadline: deadline)
        guard state == expected else {
            if state == .copyOut || state == .copyIn { await abandonStatement() }
            throw PostgresError(code: .misuse, message: "the statement did not start the expected COPY")
        }
    }

    /// Appends the next rows of a COPY TO STDOUT to `buffer`, up to about `limit` bytes
    /// (whole rows), each through `rewrite` when given. Returns false, leaving `buffer`
    /// untouched, once the COPY has ended successfully; throws the server's error if it failed.
    public func readCopyData(
        into buffer: inout [UInt8],
        limit: Int = 256 * 1024,
        deadline: ContinuousClock.Instant? = nil,
        rewrite: CopyRowRewrite? = nil
    ) async throws -> Bool {
        try state.requireCopyOut()
        guard let handle else { throw closedError() }
        if state == .copyOutEnded {
            state.readingCopyOutResult()
            defer { state.statementEnded() }
            _ = try await collectResults(deadline: deadline)
            return false
        }
        let start = buffer.count
        var triedSocket = false
        while buffer.count - start < limit {
            var row: UnsafeMutablePointer<CChar>?
            let length = PQgetCopyData(handle, &row, 1)
            if length > 0, let row {
                row.withMemoryRebound(to: UInt8.self, capacity: Int(length)) {
                    let bytes = UnsafeBufferPointer(start: $0, count: Int(length))
                    if let rewrite { rewrite(bytes, &buffer) } else { buffer.append(contentsOf: bytes) }
                }
                PQfreemem(row)
                triedSocket = false
            } else if length == 0 {
                // Read the socket before waiting for it: while the server streams, data is
                // usually there already, and a wait costs a round trip through the reactor.
                if !triedSocket {
                    triedSocket = true
                    guard PQconsumeInput(handle) == 1 else { throw copyLost() }
                    continue
                }
                triedSocket = false
                // Half a batch is worth sending while the server produces the rest.
                if buffer.count - start >= limit / 2 { return true }
                try await waitForSocket(.read, deadline: deadline)
                guard PQconsumeInput(handle) == 1 else { throw copyLost() }
            } else if length == -1 {
                // The data has ended; its final result (success or error) is read next call.
                state.copyOutRowsEnded()
                if buffer.count > start { return true }
                return try await readCopyData(into: &buffer, limit: limit, deadline: deadline, rewrite: rewrite)
            } else {
                throw copyLost()
            }
        }
        return true
    }

    /// Sends COPY FROM STDIN data, and waits until libpq has handed it all to the kernel:
    /// that wait is the backpressure that keeps memory bounded against a slow server.
    public func writeCopyData(_ bytes: [UInt8], deadline: ContinuousClock.Instant? = nil) async throws {
        try state.requireCopyIn("writeCopyData")
        guard let handle else { throw closedError() }
        let sent = bytes.withUnsafeBytes { raw in
            raw.withMemoryRebound(to: CChar.self) { PQputCopyData(handle, $0.baseAddress, Int32($0.count)) }
        }
        guard sent == 1 else { throw try await copyInFailure() }
        try await flush(deadline: deadline)
    }

    /// Ends a COPY FROM STDIN successfully and returns the number of rows the server stored.
    @discardableResult
    public func finishCopyIn(deadline: ContinuousClock.Instant? = nil) async throws -> Int {
        try await endCopyIn(errorMessage: nil, deadline: deadline)
    }

    /// Ends a COPY FROM STDIN with an error: the server discards what it received.
    public func abortCopyIn(_ reason: String, deadline: ContinuousClock.Instant? = nil) async throws {
        do {
            _ = try await endCopyIn(errorMessage: reason, deadline: deadline)
        } catch let error as PostgresError where error.sqlState == "57014" {
            return  // query_canceled: what aborting a COPY reports
        }
    }

    private func endCopyIn(errorMessage: String?, deadline: ContinuousClock.Instant?) async throws -> Int {
        try state.requireCopyIn("endCopyIn")
        guard let handle else { throw closedError() }
        state.endingCopyIn()
        defer { state.statementEnded() }
        guard PQputCopyEnd(handle, errorMessage) != -1 else { throw lastError(code: .connectionClosed) }
        try await flush(deadline: deadline)
        // The COPY's own result comes first (a `RELEASE SAVEPOINT` may follow it).
        let results = try await collectResults(deadline: deadline)
        return results.first?.affectedRows ?? 0
    }

    /// Why a PQputCopyData failed: usually the server ended the COPY with an error.
    private func copyInFailure() async throws -> PostgresError {
        state.endingCopyIn()
        defer { state.statementEnded() }
        do {
            _ = try await collectResults(deadline: .now + Self.cleanupGrace)
        } catch let error as PostgresError {
            return error
        }
        return lastError(code: .copyFailed)
    }

    private func copyLost() -> PostgresError {
        state.copyLost()
        return lastError(code: .connectionClosed)
    }

    /// Streams `COPY ... TO STDOUT` on `source` into `COPY ... FROM STDIN` on `destination`,
    /// one bounded batch at a time: memory stays at about one batch whatever the volume.
    ///
    /// The destination's COPY starts once the source has sent its first rows (or ended): while
    /// a slow source computes them, the destination's transaction is merely idle, which the
    /// server can bound (`inTransaction`), whereas a COPY FROM STDIN waiting for data can only
    /// be ended by terminating its session.
    ///
    /// If either side fails, the other side's COPY is ended too (the destination's is aborted,
    /// so it stores nothing of it) and the first error is thrown, tagged with the side it came
    /// from (`CopyPipeError`). Returns the rows stored.
    ///
    /// `rewrite`, when given, writes each row as it passes (see `CopyRowRewrite`); the pipe is
    /// otherwise a byte pipe.
    @discardableResult
    public static func pipeCopy(
        from source: PostgresConnection,
        _ copyOutSQL: String,
        to destination: PostgresConnection,
        _ copyInSQL: String,
        batchSize: Int = 256 * 1024,
        deadline: ContinuousClock.Instant? = nil,
        rewrite: CopyRowRewrite? = nil,
        progress: CopyProgress? = nil
    ) async throws(CopyPipeError) -> Int {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(batchSize + 64 * 1024)
        var more: Bool
        do {
            try await source.startCopyOut(copyOutSQL, deadline: deadline)
            more = try await source.readCopyData(into: &buffer, limit: batchSize, deadline: deadline, rewrite: rewrite)
        } catch {
            throw CopyPipeError(side: .source, underlying: error)
        }
        do {
            try await destination.startCopyIn(copyInSQL, deadline: deadline)
        } catch {
            await source.abandonCopyOut()
            throw CopyPipeError(side: .destination, underlying: error)
        }
        while more {
            progress?.sent(buffer.count)
            do {
                try await destination.writeCopyData(buffer, deadline: deadline)
            } catch {
                await source.abandonCopyOut()
                throw CopyPipeError(side: .destination, underlying: error)
            }
            buffer.removeAll(keepingCapacity: true)
            do {
                more = try await source.readCopyData(into: &buffer, limit: batchSize, deadline: deadline, rewrite: rewrite)
            } catch {
                try? await destination.abortCopyIn("source failed", deadline: .now + Self.cleanupGrace)
                throw CopyPipeError(side: .source, underlying: error)
            }
        }
        do {
            return try await destination.finishCopyIn(deadline: deadline)
        } catch {
            throw CopyPipeError(side: .destination, underlying: error)
        }
    }

    /// Streams `COPY ... TO STDOUT` on `source` into `sink` (a file, say), one bounded batch
    /// at a time, each row through `rewrite` when given: as `pipeCopy`, with a sink for
    /// destination. An error of the sink stops the COPY; the first error is thrown, tagged with
    /// its side.
    public static func pipeCopy(
        from source: PostgresConnection,
        _ copyOutSQL: String,
        batchSize: Int = 256 * 1024,
        deadline: ContinuousClock.Instant? = nil,
        rewrite: CopyRowRewrite? = nil,
        progress: CopyProgress? = nil,
        into sink: ([UInt8]) async throws -> Void
    ) async throws(CopyPipeError) {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(batchSize + 64 * 1024)
        do {
            try await source.startCopyOut(copyOutSQL, deadline: deadline)
        } catch {
            throw CopyPipeError(side: .source, underlying: error)
        }
        while true {
            do {
                guard try await source.readCopyData(into: &buffer, limit: batchSize, deadline: deadline, rewrite: rewrite)
                else { return }
            } catch {
                throw CopyPipeError(side: .source, underlying: error)
            }
            progress?.sent(buffer.count)
            do {
                try await sink(buffer)
            } catch {
                await source.abandonCopyOut()
                throw CopyPipeError(side: .destination, underlying: error)
            }
            buffer.removeAll(keepingCapacity: true)
        }
    }

    /// Stops reading a COPY TO STDOUT that is no longer wanted.
    func abandonCopyOut() async {
        guard state == .copyOut || state == .copyOutEnded else { return }
        await abandonStatement()
    }
}

/// A failed `pipeCopy`: the error, and the side it came from.
public struct CopyPipeError: Error, CustomStringConvertible, CustomDebugStringConvertible {
    public enum Side: Sendable {
        case source, destination
    }

    public let side: Side
    public let underlying: any Error

    public init(side: Side, underlying: any Error) {
        self.side = side
        self.underlying = underlying
    }

    public var description: String { "\(underlying)" }
    public var debugDescription: String { "CopyPipeError(\(side), \(String(reflecting: underlying)))" }
}
