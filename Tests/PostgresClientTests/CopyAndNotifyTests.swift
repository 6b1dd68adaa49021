import Foundation
import PostgresClient
import TestBed
import Testing

@Suite("COPY streams and LISTEN/NOTIFY", .timeLimit(.minutes(4)))
struct CopyAndNotifyTests {
    /// The two ends of a COPY pipe: `body` gets the shared bed, a source (a remote), a
    /// destination (the repository) and a new table there of `columns`, dropped afterwards.
    static func withPipe(
        columns: String, _ body: (TestBed, PostgresConnection, PostgresConnection, String) async throws -> Void
    ) async throws {
        let bed = try await TestBed.shared()
        let source = try await bed.connect(port: bed.remotePorts[0])
        let destination = try await bed.connect(port: bed.repositoryPort)
        defer {
            source.close()
            destination.close()
        }
        let table = "copy_pipe_\(UInt32.random(in: 0...UInt32.max))"
        try await destination.execute("CREATE TABLE \(table) (\(columns))")
        try await body(bed, source, destination, table)
        try await destination.execute("DROP TABLE \(table)")
    }

    @Test("a COPY pipe of 1,000,000 rows between two clusters arrives complete")
    func copyPipe() async throws {
        try await Self.withPipe(columns: "i int, t text, a int[]") { _, source, destination, table in
            let rows = """
                SELECT i, md5(i::text) || E'\\t\\\\ ''x''', ARRAY[i, -i] FROM generate_series(1, 1000000) AS i
                """
            let stored = try await PostgresConnection.pipeCopy(
                from: source, "COPY (\(rows)) TO STDOUT",
                to: destination, "COPY \(table) FROM STDIN")
            #expect(stored == 1_000_000)
            let checksum = "SELECT count(*), sum(i), md5(string_agg(t || a::text, ',' ORDER BY i))"
            let expected = try await source.query("\(checksum) FROM (\(rows)) AS s(i, t, a)").rows[0]
            let landed = try await destination.query("\(checksum) FROM \(table)").rows[0]
            #expect(landed == expected)
            #expect(landed[0] == "1000000")
        }
    }

    @Test("a failing COPY source stores nothing and both connections stay usable")
    func failingSource() async throws {
        try await Self.withPipe(columns: "i int") { _, source, destination, table in
            let failure = try await #require(throws: CopyPipeError.self) {
                try await PostgresConnection.pipeCopy(
                    from: source, "COPY (SELECT 1 / (100000 - i) FROM generate_series(1, 200000) i) TO STDOUT",
                    to: destination, "COPY \(table) FROM STDIN")
            }
            #expect(failure.side == .source)
            #expect((failure.underlying as? PostgresError)?.sqlState == "22012")
            #expect(try await destination.query("SELECT count(*) FROM \(table)").rows[0][0] == "0")
            #expect(try await source.query("SELECT 1").rows[0][0] == "1")
        }
    }

    @Test(
        "a COPY pipe whose sides each run in a savepoint of one statement: released when it lands, rolled back to it when either side fails, the transactions going on"
    )
    func savepointPipe() async throws {
        try await Self.withPipe(columns: "i int CHECK (i <> 150000)") { _, source, destination, table in
            try await source.execute("BEGIN")
            try await destination.execute("BEGIN; INSERT INTO \(table) VALUES (-1)")
            func pipe(_ rows: String) async throws(CopyPipeError) -> Int {
                do {
                    return try await PostgresConnection.pipeCopy(
                        from: source, PostgresConnection.inSavepoint("pipe_source", "COPY (\(rows)) TO STDOUT"),
                        to: destination, PostgresConnection.inSavepoint("pipe_source", "COPY \(table) FROM STDIN"))
                } catch {
                    await source.rollBackToSavepoint("pipe_source", deadline: .now + .seconds(10))
                    await destination.rollBackToSavepoint("pipe_source", deadline: .now + .seconds(10))
                    throw error
                }
            }
            #expect(try await pipe("SELECT i FROM generate_series(1, 1000) i") == 1000)
            // Released: the name is gone on both sides (checked in a savepoint of the test's).
            for connection in [source, destination] {
                try await connection.execute("SAVEPOINT probe")
                await #expect(throws: PostgresError.self) {
                    try await connection.execute("ROLLBACK TO SAVEPOINT pipe_source")
                }
                try await connection.execute("ROLLBACK TO SAVEPOINT probe; RELEASE SAVEPOINT probe")
            }
            // The source fails mid-stream; then the destination (its check) does.
            let sourceFailure = try await #require(throws: CopyPipeError.self) {
                try await pipe("SELECT 1 / (100000 - i) FROM generate_series(1, 200000) i")
            }
            #expect(sourceFailure.side == .source)
            #expect((sourceFailure.underlying as? PostgresError)?.sqlState == "22012")
            let destinationFailure = try await #require(throws: CopyPipeError.self) {
                try await pipe("SELECT i FROM generate_series(100001, 200000) i")
            }
            #expect(destinationFailure.side == .destination)
            #expect((destinationFailure.underlying as? PostgresError)?.sqlState == "23514")
            for connection in [source, destination] {
                #expect(connection.canContinueTransaction)
            }
            #expect(try await pipe("SELECT i FROM generate_series(5001, 5010) i") == 10)
            try await source.execute("COMMIT")
            try await destination.execute("COMMIT")
            let landed = try await destination.query("SELECT count(*), min(i), max(i) FROM \(table)").rows[0]
            #expect([landed[0], landed[1], landed[2]] == ["1011", "-1", "5010"])
        }
    }

    @Test(
        "the destination's COPY starts once the source has rows: idle in transaction meanwhile; a destination that fails leaves the source usable"
    )
    func destinationWaitsForRows() async throws {
        try await Self.withPipe(columns: "i int") { bed, source, destination, table in
            let destinationPID = destination.backendPID
            // While the source sleeps (1.5 s before its first row), the destination's backend is
            // idle in its transaction (which the server can time out), not inside a COPY waiting
            // for data (which it cannot): its state, sampled over the first second.
            let sampler = Task {
                let observer = try await bed.connect(port: bed.repositoryPort)
                defer { observer.close() }
                var states: [String] = []
                let end = ContinuousClock.now + .seconds(1)
                while ContinuousClock.now < end {
                    let state = try await observer.query(
                        "SELECT state || ': ' || query FROM pg_stat_activity WHERE pid = $1", ["\(destinationPID)"]
                    ).rows.first?[0]
                    states.append(state ?? "gone")
                    try await Task.sleep(for: .milliseconds(50))
                }
                return states
            }
            let stored = try await destination.inTransaction(deadline: .now + .seconds(30)) {
                try await PostgresConnection.pipeCopy(
                    from: source, "COPY (SELECT i FROM generate_series(1, 3) i, pg_sleep(1.5)) TO STDOUT",
                    to: destination, "COPY \(table) FROM STDIN")
            }
            let states = try await sampler.value
            #expect(
                states.contains { $0.hasPrefix("idle in transaction") } && states.allSatisfy { $0.hasPrefix("idle") },
                "\(Set(states))")
            #expect(stored == 3)
            #expect(try await destination.query("SELECT sum(i) FROM \(table)").rows[0][0] == "6")

            // A destination that cannot take the rows: its error, and the source's COPY is ended.
            let failure = try await #require(throws: CopyPipeError.self) {
                try await PostgresConnection.pipeCopy(
                    from: source, "COPY (SELECT i FROM generate_series(1, 100000) i) TO STDOUT",
                    to: destination, "COPY \(table)_missing FROM STDIN")
            }
            #expect(failure.side == .destination)
            #expect((failure.underlying as? PostgresError)?.sqlState == "42P01")
            #expect(try await source.query("SELECT 1").rows[0][0] == "1")
            #expect(try await destination.query("SELECT 1").rows[0][0] == "1")
        }
    }

    @Test("a NOTIFY payload with quotes, backslashes, spaces and non-ASCII arrives intact with the sender's pid")
    func notifications() async throws {
        let bed = try await TestBed.shared()
        let listener = try await bed.connect(port: bed.repositoryPort)
        let sender = try await bed.connect(port: bed.repositoryPort)
        defer {
            listener.close()
            sender.close()
        }
        let channel = "Chan nel \"\(UInt16.random(in: 0...UInt16.max))\""
        try await listener.execute("LISTEN \"\(channel.replacingOccurrences(of: "\"", with: "\"\""))\"")
        let payloads = [
            "it's a \"quoted\" \\ back\\slash;  two  spaces, ünïcødé ✓ 日本語",
            "",
            "RELOAD -",
        ]
        var iterator = listener.notifications.makeAsyncIterator()
        for payload in payloads {
            _ = try await sender.query("SELECT pg_notify($1, $2)", [channel, payload])
            let received = try #require(try await iterator.next())
            #expect(received.channel == channel)
            #expect(received.payload == payload)
            #expect(received.senderPID == sender.backendPID)
        }
        // Nothing else arrives: the wait ends at its deadline.
        #expect(try await listener.nextNotification(deadline: .now + .milliseconds(200)) == nil)
    }

    @Test("a listener learns at once that its server went away")
    func listenerSeesTermination() async throws {
        let bed = try await TestBed.shared()
        let listener = try await bed.connect(port: bed.repositoryPort)
        let killer = try await bed.connect(port: bed.repositoryPort)
        defer {
            listener.close()
            killer.close()
        }
        try await listener.execute("LISTEN terminated_soon")
        _ = try await killer.query("SELECT pg_terminate_backend($1)", ["\(listener.backendPID)"])
        await #expect(throws: PostgresError.self) {
            _ = try await listener.nextNotification(deadline: .now + .seconds(30))
        }
    }

    @Test("a session whose wait timed out, then ended by its server while nobody waits, costs the reactor nothing")
    func idleHangUp() async throws {
        let bed = try await TestBed.shared()
        // Over a Unix socket, whose peer's close is a hang-up (EPOLLHUP) for epoll.
        let listener = try await PostgresConnection.connect(
            ConnectionConfiguration(
                connectionString: "host=\(bed.socketDirectory) port=\(bed.repositoryPort) dbname=postgres user=postgres"))
        let killer = try await bed.connect(port: bed.repositoryPort)
        defer {
            listener.close()
            killer.close()
        }
        try await listener.execute("LISTEN nobody_notifies")
        #expect(try await listener.nextNotification(deadline: .now + .milliseconds(50)) == nil)
        // The server hangs up while the listener waits for nothing.
        _ = try await killer.query("SELECT pg_terminate_backend($1)", ["\(listener.backendPID)"])
        let before = try ReactorThread.cpuSeconds()
        // A second of idleness, measured on the reactor's own thread: the second is the
        // measurement's window, not a wait for something.
        try await Task.sleep(for: .seconds(1))
        let spent = try ReactorThread.cpuSeconds() - before
        #expect(spent < 0.2, "the reactor spent \(spent) s of CPU in 1 s of idleness")
    }
}

/// The CPU time of the reactor's thread (`powa-reactor`), from /proc.
enum ReactorThread {
    static func cpuSeconds() throws -> Double {
        let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")
        for task in tasks {
            let comm = (try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8)) ?? ""
            guard comm.hasPrefix("powa-reactor") else { continue }
            let stat = try String(contentsOfFile: "/proc/self/task/\(task)/stat", encoding: .utf8)
            // Fields after the command's closing parenthesis: utime and stime are 14 and 15.
            let fields = stat[stat.index(after: stat.lastIndex(of: ")")!)...].split(separator: " ")
            let ticks = (Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)
            return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
        }
        throw TestBedError(message: "no powa-reactor thread in this process")
    }
}
