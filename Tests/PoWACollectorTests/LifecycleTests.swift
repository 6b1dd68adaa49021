import Foundation
import PoWACollector
import PostgresClient
import TestBed
import TestWaiting
import Testing

/// The backend pids of a cluster's sessions whose application_name is `name`.
func backendPIDs(bed: TestBed, port: Int, applicationName name: String) async throws -> [String] {
    let connection = try await bed.connect(port: port, database: "postgres")
    defer { connection.close() }
    return try await connection.query(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY pid", [name]
    ).rows.compactMap { $0[0] }
}

/// Writes a configuration file for the collector binary.
func writeConfiguration(_ configuration: CollectorConfiguration) throws -> String {
    let path = "/tmp/powa-daemon-\(UInt64.random(in: 0...UInt64.max)).conf"
    try configuration.json.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

@Suite("Reload, signals and the repository connection", .timeLimit(.minutes(4)))
struct LifecycleTests {
    @Test(
        "deactivate + RELOAD, re-enable + SIGHUP, a changed port; unchanged servers keep their connection",
        arguments: PoWAMajor.allCases)
    func reload(major: PoWAMajor) async throws {
        let bed = try await TestBed.shared(major)
        let repository = try await ScratchRepository.create(on: bed)
        let tag = UInt32.random(in: 0...UInt32.max)
        let kept = try await repository.register(port: bed.remotePorts[0], alias: "kept-\(tag)")
        let moved = try await repository.register(port: bed.remotePorts[1], alias: "moved-\(tag)")
        var configuration = CollectorConfiguration(repositoryDSN: repository.dsn)
        configuration.useServerAlias = true
        configuration.debug = true
        let daemon = try DaemonProcess(DaemonProcess.collectorBinary, ["--config", try writeConfiguration(configuration)])
        let client = try await ControlClient.connect(repository)
        defer { client.close() }
        let both = "{\"\(kept)\": \"running\", \"\(moved)\": \"running\"}"
        #expect(try await client.waitForStatus { $0.hasSuffix(both) } == "WORKERS_STATUS OK \(both)")
        let keptPID = try await backendPIDs(
            bed: bed, port: bed.remotePorts[0], applicationName: "PoWA collector - worker kept-\(tag)")
        #expect(keptPID.count == 1)

        // Deactivated + RELOAD: gone from WORKERS_STATUS, no snapshot of it afterwards.
        try await repository.execute("SELECT powa_deactivate_server(\(moved))")
        #expect(try await client.ask("RELOAD r1 ", channel: "r1") == "RELOAD OK OK")
        #expect(try await client.ask("WORKERS_STATUS r1 ", channel: "r1") == "WORKERS_STATUS OK {\"\(kept)\": \"running\"}")
        #expect(
            try await backendPIDs(bed: bed, port: bed.remotePorts[1], applicationName: "PoWA collector - worker moved-\(tag)")
                .isEmpty)
        let frozen = try await repository.snapts(moved)
        _ = try await repository.waitForSnapshots(kept, count: 2)
        #expect(try await repository.snapts(moved) == frozen)

        // Re-enabled on another port + SIGHUP: started again, on its new address.
        try await repository.execute(
            "UPDATE powa_servers SET frequency = 5, hostname = 'localhost', port = \(bed.remotePorts[0]) WHERE id = \(moved)")
        daemon.signal(SIGHUP)
        #expect(try await client.waitForStatus { $0.hasSuffix(both) } == "WORKERS_STATUS OK \(both)")
        _ = try await repository.waitForSnapshots(moved, count: 1)
        #expect(
            try await backendPIDs(bed: bed, port: bed.remotePorts[0], applicationName: "PoWA collector - worker moved-\(tag)")
                .count == 1)
        #expect(
            try await backendPIDs(bed: bed, port: bed.remotePorts[0], applicationName: "PoWA collector - worker kept-\(tag)")
                == keptPID)

        daemon.signal(SIGTERM)
        #expect(await daemon.wait() == 0)
        #expect(daemon.output.contains("SIGHUP received: reloading"))
    }

    /// A collector process snapshotting one server of `bed` (its alias: `tag` and a random
    /// number), whose source `source` sleeps `seconds` on the remote.
    static func daemonWithSlowSource(
        on bed: TestBed, tag: String, source: String, seconds: Int, snapshotTimeout: Double? = nil
    ) async throws -> (ScratchRepository, tag: String, server: Int, DaemonProcess) {
        let repository = try await ScratchRepository.create(on: bed)
        let alias = "\(tag)-\(UInt32.random(in: 0...UInt32.max))"
        let server = try await repository.register(port: bed.remotePorts[0], alias: alias)
        try await addSlowSource(
            repository: repository, serverID: server, remotePort: bed.remotePorts[0], seconds: seconds, name: source)
        var configuration = CollectorConfiguration(repositoryDSN: repository.dsn)
        configuration.useServerAlias = true
        if let snapshotTimeout { configuration.snapshotTimeout = snapshotTimeout }
        let daemon = try DaemonProcess(DaemonProcess.collectorBinary, ["--config", try writeConfiguration(configuration)])
        return (repository, alias, server, daemon)
    }

    @Test(
        "SIGTERM during a snapshot: exit 0 within 5 s, nothing of it landed, no session of ours left",
        arguments: PoWAMajor.allCases)
    func terminateDuringSnapshot(major: PoWAMajor) async throws {
        let bed = try await TestBed.shared(major)
        let (repository, tag, server, daemon) = try await Self.daemonWithSlowSource(
            on: bed, tag: "term", source: "slow_term_src", seconds: 4)
        let first = try #require(try await repository.waitForSnapshots(server, count: 1).last)
        let history = try await repository.int(
            "SELECT count(*) FROM powa_statements_history_current WHERE srvid = $1", ["\(server)"])

        try await waitForActiveQuery(bed: bed, port: bed.remotePorts[0], like: "%\"slow_term_src\"%")
        let started = ContinuousClock.now
        daemon.signal(SIGTERM)
        let code = await daemon.wait()
        #expect(code == 0)
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(try await repository.snapts(server) == first)
        #expect(
            try await repository.int(
                "SELECT count(*) FROM powa_statements_history_current WHERE srvid = $1", ["\(server)"]) == history)
        #expect(try await repository.int("SELECT count(*) FROM powa_statements_src_tmp WHERE srvid = $1", ["\(server)"]) == 0)
        for port in [bed.repositoryPort] + bed.remotePorts {
            let connection = try await bed.connect(port: port, database: "postgres")
            let ours = try await connection.query(
                """
                SELECT count(*) FROM pg_stat_activity
                WHERE application_name LIKE 'PoWA collector - %' AND (application_name LIKE '%\(tag)%' OR datname = $1)
                """, [repository.database]
            ).rows[0][0]
            connection.close()
            #expect(ours == "0", "sessions of ours left on port \(port)")
        }
    }

    @Test("SIGTERM with every remote frozen (blackholed), one mid-snapshot: exit 0 within 10 s")
    func terminateWithFrozenRemotes() async throws {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        let proxies = try bed.remotePorts.map { try FaultProxy(targetPort: $0) }
        defer { proxies.forEach { $0.close() } }
        let tag = UInt32.random(in: 0...UInt32.max)
        let slow = try await repository.register(port: proxies[0].port, alias: "frozen-slow-\(tag)")
        try await addSlowSource(
            repository: repository, serverID: slow, remotePort: bed.remotePorts[0], seconds: 4, name: "frozen_term_src")
        let idle = try await repository.register(port: proxies[1].port, alias: "frozen-idle-\(tag)")
        var configuration = CollectorConfiguration(repositoryDSN: repository.dsn)
        configuration.useServerAlias = true
        let daemon = try DaemonProcess(DaemonProcess.collectorBinary, ["--config", try writeConfiguration(configuration)])
        _ = try await repository.waitForSnapshots(idle, count: 1)
        _ = try await repository.waitForSnapshots(slow, count: 1)

        // The network drops everything while the slow source runs: the rollback's cancel
        // request gets no answer either.
        try await waitForActiveQuery(bed: bed, port: bed.remotePorts[0], like: "%frozen_term_src%")
        for proxy in proxies { proxy.stall() }
        let started = ContinuousClock.now
        daemon.signal(SIGTERM)
        let code = await daemon.wait(orKillAfter: .seconds(20))
        #expect(code == 0)
        #expect(ContinuousClock.now - started < .seconds(10))
    }

    @Test(
        "a collector frozen mid-snapshot (SIGSTOP): both servers end its transactions within snapshot_timeout + 10 s, not before 10 s; resumed, it snapshots again"
    )
    func frozenDuringSnapshot() async throws {
        let bed = try await TestBed.shared()
        let (repository, tag, server, daemon) = try await Self.daemonWithSlowSource(
            on: bed, tag: "frozen", source: "slow_frozen_src", seconds: 2, snapshotTimeout: 6)
        defer { daemon.signal(SIGKILL) }
        _ = try await repository.waitForSnapshots(server, count: 1)

        // Frozen while the remote computes the slow source: the remote's transaction then
        // sits idle, and so does the repository's (its COPY has not started).
        try await waitForActiveQuery(bed: bed, port: bed.remotePorts[0], like: "%\"slow_frozen_src\"%")
        daemon.signal(SIGSTOP)
        let frozen = ContinuousClock.now
        let lastLanded = try await repository.snapts(server)
        var observers: [PostgresConnection] = []
        for port in [bed.repositoryPort, bed.remotePorts[0]] {
            observers.append(try await bed.connect(port: port, database: "postgres"))
        }
        defer { observers.forEach { $0.close() } }
        func transactionsOfOurs() async throws -> Int {
            var count = 0
            for observer in observers {
                count += try await observer.query(
                    """
                    SELECT count(*) FROM pg_stat_activity
                    WHERE xact_start IS NOT NULL AND backend_type = 'client backend'
                      AND (application_name LIKE $1 OR datname = $2)
                    """, ["%\(tag)%", repository.database]
                ).rows[0].decode(0, as: Int.self)
            }
            return count
        }
        // The remote's, the repository's (and a statement in flight when it froze, maybe).
        #expect(try await transactionsOfOurs() >= 2)
        let ended = try await eventually(timeout: .seconds(40), interval: .milliseconds(200)) {
            try await transactionsOfOurs() == 0
        }
        let after = ContinuousClock.now - frozen
        #expect(ended, "the frozen collector's transactions were never ended")
        // The grace at least; at most the snapshot timeout, the grace and the slow source.
        #expect(after >= .seconds(9) && after < .seconds(6 + 10 + 2 + 3), "\(after)")

        daemon.signal(SIGCONT)
        let resumed = try await repository.waitForSnapshots(server, count: 1, after: lastLanded, timeout: .seconds(60))
        #expect(!resumed.isEmpty)
        daemon.signal(SIGTERM)
        #expect(await daemon.wait() == 0)
    }

    @Test("a collector frozen (SIGSTOP) for several periods, then resumed: one late snapshot, then the cadence, never a burst")
    func noBurstAfterFreeze() async throws {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(port: bed.remotePorts[1], alias: "thawed-\(UInt32.random(in: 0...UInt32.max))")
        let log = try await SnapshotLog.install(on: repository)
        var configuration = CollectorConfiguration(repositoryDSN: repository.dsn)
        configuration.useServerAlias = true
        let daemon = try DaemonProcess(DaemonProcess.collectorBinary, ["--config", try writeConfiguration(configuration)])
        defer { daemon.signal(SIGKILL) }
        _ = try await repository.waitForSnapshots(server, count: 2)

        // Frozen until the repository ends its membership (10 s of silence: two slots missed),
        // its advisory locks gone with the session.
        daemon.signal(SIGSTOP)
        let frozenAt = try await log.now()
        let leaseEnded = try await eventually(timeout: .seconds(30), interval: .milliseconds(200)) {
            try await repository.int(
                """
                SELECT count(*) FROM pg_locks
                WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = $1)
                """, [repository.database]) == 0
        }
        #expect(leaseEnded)
        daemon.signal(SIGCONT)
        let resumed = try await repository.waitForSnapshots(server, count: 3, timeout: .seconds(40))
        #expect(resumed.count == 3)
        // Within half a period (2.5 s), less a margin for the instant each transaction begins.
        #expect(try await log.doubled(within: 2) == [])
        #expect(try await log.snapshots(from: frozenAt)[server]?.count ?? 0 >= 3)
        daemon.signal(SIGTERM)
        #expect(await daemon.wait() == 0)
    }

    @Test("the repository restarted: the collector answers again within 10 s and snapshots resume")
    func repositoryRestart() async throws {
        try await TestBed.withPrivate(name: "repository-restart", port: 5465, remotes: 1) { bed in
            try await restartRepository(bed: bed)
        }
    }

    private func restartRepository(bed: TestBed) async throws {
        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(port: bed.remotePorts[0])
        let running = RunningCollector(repository: repository)
        let client = try await ControlClient.connect(repository)
        #expect(try await client.waitForStatus { $0.contains("running") } != nil)
        client.close()
        let before = try #require(try await repository.waitForSnapshots(server, count: 1).last)

        try await bed.pgCtl(bed.repositoryDataDirectory, ["restart", "-m", "fast"])
        let restarted = ContinuousClock.now
        let expected = "WORKERS_STATUS OK {\"\(server)\": \"running\"}"
        let again = try await ControlClient.connect(repository)
        let answer = try await again.waitForStatus({ $0 == expected }, timeout: .seconds(10))
        again.close()
        #expect(answer == expected)
        #expect(ContinuousClock.now - restarted < .seconds(10))
        let after = try await repository.waitForSnapshots(server, count: 2, after: before)
        #expect(after.count == 2)
        // The control channel's outage: one error line, one line when it ends.
        let control = running.logs.lines.filter { $0.contains("control channel") }
        #expect(control.filter { $0.hasPrefix("error") }.count == 1, "\(control)")
        #expect(control.contains { $0.hasPrefix("info") && $0.contains("reachable again (after ") }, "\(control)")
        #expect(running.collector.board.statuses().keys.sorted() == [server])
        try await running.stop()
    }
}
