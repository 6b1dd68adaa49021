import PostgresClient
import Synchronization
import TestBed
import TestWaiting
import Testing

@Suite("Statements, cancellation and the cooperative pool", .timeLimit(.minutes(4)))
struct StatementTests {
    @Test("a bad statement reports its SQLSTATE and leaves the connection usable")
    func badStatement() async throws {
        let bed = try await TestBed.shared()
        let connection = try await bed.connect(port: bed.repositoryPort)
        defer { connection.close() }
        let error = try await #require(throws: PostgresError.self) {
            _ = try await connection.query("SELECT * FROM no_such_table_here")
        }
        #expect(error.code == .server)
        #expect(error.sqlState == "42P01")
        #expect(error.message.contains("no_such_table_here"))
        let after = try await connection.query("SELECT $1::int + 1, NULL::text", ["41"])
        #expect(try after.rows[0].decode(0, as: Int.self) == 42)
        #expect(after.rows[0][1] == nil)
        #expect(connection.transactionStatus == .idle)
    }

    @Test("a server error carries its detail and hint")
    func errorFields() async throws {
        let bed = try await TestBed.shared()
        let connection = try await bed.connect(port: bed.repositoryPort)
        defer { connection.close() }
        let error = try await #require(throws: PostgresError.self) {
            try await connection.execute(
                "DO $$ BEGIN RAISE EXCEPTION 'boom' USING ERRCODE = '22012', DETAIL = 'the detail', HINT = 'the hint'; END $$")
        }
        #expect(error.sqlState == "22012")
        #expect(error.message == "boom")
        #expect(error.detail == "the detail")
        #expect(error.hint == "the hint")
    }

    @Test("a SELECT 1 completes while 20 other connections sit in pg_sleep(2)")
    func poolIsNotBlocked() async throws {
        let bed = try await TestBed.shared()
        let order = Recorder()
        let marker = "pool-test-\(UInt32.random(in: 0...UInt32.max))"
        let observer = try await bed.connect(port: bed.repositoryPort)
        defer { observer.close() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<20 {
                group.addTask {
                    let connection = try await bed.connect(port: bed.repositoryPort)
                    defer { connection.close() }
                    _ = try await connection.query("SELECT pg_sleep(2) /* \(marker) */")
                    order.append("sleep\(index)")
                }
            }
            // Wait until all 20 are running on the server.
            let allRunning = try await eventually(interval: .milliseconds(20)) {
                try await observer.query(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1",
                    ["%\(marker)%"]
                ).rows[0].decode(0, as: Int.self) >= 20
            }
            #expect(allRunning)
            let other = try await bed.connect(port: bed.repositoryPort)
            _ = try await other.query("SELECT 1")
            other.close()
            order.append("select1")
            try await group.waitForAll()
        }
        let finished = order.values
        #expect(finished.count == 21)
        #expect(finished.first == "select1")
    }

    @Test("a deadline cancels the statement on the server and the connection stays usable")
    func deadline() async throws {
        let bed = try await TestBed.shared()
        let connection = try await bed.connect(port: bed.repositoryPort)
        defer { connection.close() }
        let error = try await #require(throws: PostgresError.self) {
            _ = try await connection.query("SELECT pg_sleep(600)", deadline: .now + .milliseconds(300))
        }
        #expect(error.code == .timedOut)
        #expect(!connection.isClosed)
        let pid = try await connection.query("SELECT pg_backend_pid()").rows[0].decode(0, as: Int32.self)
        #expect(pid == connection.backendPID)
    }

    @Test("a transaction left idle past its deadline and grace is ended by the server, not before")
    func idleTransactionBound() async throws {
        let bed = try await TestBed.shared()
        let connection = try await bed.connect(port: bed.repositoryPort)
        let observer = try await bed.connect(port: bed.repositoryPort)
        defer {
            connection.close()
            observer.close()
        }
        let pid = connection.backendPID
        var idle: Duration?
        // Before BEGIN: what is measured is never shorter than what the server counts.
        let frozen = ContinuousClock.now
        await #expect(throws: (any Error).self) {
            try await connection.inTransaction(deadline: frozen + .milliseconds(500), idleGrace: .seconds(1)) {
                // As a frozen process would: nothing more is sent while the transaction is open.
                let ended = try await eventually(timeout: .seconds(10), interval: .milliseconds(50)) {
                    try await observer.query("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", ["\(pid)"]).rows[0][0]
                        == "0"
                }
                if ended { idle = .now - frozen }
            }
        }
        // The deadline's 0.5 s and the grace's 1 s, counted by the server from BEGIN's answer.
        let measured = try #require(idle, "the server never ended the idle transaction")
        #expect(measured >= .milliseconds(1450) && measured < .seconds(4), "\(measured)")
        #expect(!connection.isHealthy)
    }

    @Test("cancelling the waiting task ends pg_sleep(600) and leaves no such backend")
    func taskCancellation() async throws {
        let bed = try await TestBed.shared()
        let marker = "cancel-test-\(UInt32.random(in: 0...UInt32.max))"
        let observer = try await bed.connect(port: bed.repositoryPort)
        defer { observer.close() }
        let sleeper = Task {
            let connection = try await bed.connect(port: bed.repositoryPort)
            defer { connection.close() }
            _ = try await connection.query("SELECT pg_sleep(600) /* \(marker) */")
        }
        let running = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1"
        #expect(
            try await eventually(interval: .milliseconds(20)) {
                try await observer.query(running, ["%\(marker)%"]).rows[0].decode(0, as: Int.self) > 0
            })
        sleeper.cancel()
        let outcome = await sleeper.result
        #expect(throws: CancellationError.self) { try outcome.get() }
        #expect(try await observer.query(running, ["%\(marker)%"]).rows[0].decode(0, as: Int.self) == 0)
    }

    @Test("server notices go to swift-log with their severity")
    func notices() async throws {
        let bed = try await TestBed.shared()
        let capture = LogCapture()
        let connection = try await PostgresConnection.connect(
            .init(connectionString: bed.connectionString(port: bed.repositoryPort)), logger: capture.logger())
        defer { connection.close() }
        try await connection.execute("DO $$ BEGIN RAISE WARNING 'a warning from the server'; END $$")
        let warnings = capture.all.filter { $0.level == .warning }
        #expect(warnings.map(\.message) == ["server warning: a warning from the server"])
    }

    @Test("a connection lent with a logger logs there for the loan only")
    func lentLogger() async throws {
        let bed = try await TestBed.shared()
        let owner = LogCapture()
        let borrower = LogCapture()
        let connection = try await PostgresConnection.connect(
            .init(connectionString: bed.connectionString(port: bed.repositoryPort)), logger: owner.logger())
        defer { connection.close() }
        try await connection.withLogger(borrower.logger()) {
            try await connection.execute("DO $$ BEGIN RAISE WARNING 'during the loan'; END $$")
        }
        try await connection.execute("DO $$ BEGIN RAISE WARNING 'after the loan'; END $$")
        let warnings = { (capture: LogCapture) in capture.all.filter { $0.level == .warning }.map(\.message) }
        #expect(warnings(borrower) == ["server warning: during the loan"])
        #expect(warnings(owner) == ["server warning: after the loan"])
    }
}

/// Records the order in which concurrent tasks finished.
final class Recorder: Sendable {
    private let storage = Mutex<[String]>([])
    func append(_ value: String) { storage.withLock { $0.append(value) } }
    var values: [String] { storage.withLock { $0 } }
}

@Suite("Cancel requests", .timeLimit(.minutes(2)))
struct CancelRequestTests {
    @Test("the cancel request of a timed-out statement never lands on the next statement")
    func staleCancel() async throws {
        let bed = try await TestBed.shared()
        let connection = try await bed.connect(port: bed.repositoryPort)
        defer { connection.close() }
        var failures: [String] = []
        for _ in 0..<30 {
            await #expect(throws: PostgresError.self) {
                _ = try await connection.query("SELECT pg_sleep(5)", deadline: .now + .milliseconds(20))
            }
            if connection.isClosed { break }
            do {
                _ = try await connection.query("SELECT pg_sleep(0.05)")
            } catch {
                failures.append("\(error)")
            }
        }
        #expect(failures.isEmpty, "\(failures)")
        #expect(!connection.isClosed)
    }
}

@Suite("Secrets", .timeLimit(.minutes(1)))
struct SecretTests {
    @Test("a server error is shown as it is, even when the password is a word of it")
    func noOverMasking() async throws {
        let bed = try await TestBed.shared()
        // Trust authentication: the password is sent to no one, but the connection knows it.
        let connection = try await PostgresConnection.connect(
            ConnectionConfiguration(
                connectionString: bed.connectionString(port: bed.repositoryPort), overrides: [.init("password", "powa")]))
        defer { connection.close() }
        let error = try await #require(throws: PostgresError.self) {
            _ = try await connection.query("SELECT * FROM powa_statements_src_nowhere")
        }
        #expect(error.message == "relation \"powa_statements_src_nowhere\" does not exist")
    }
}
