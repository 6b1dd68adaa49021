import Foundation
import PoWACollector
import PostgresClient
import TestBed
import TestWaiting
import Testing

/// Defects found by attacking the daemon the way production does, each with the test that
/// failed before its fix.
@Suite("Reliability", .timeLimit(.minutes(4)))
struct ReliabilityTests {
    @Test("a remote that is down: the backoff holds whatever arrives, and FORCE_SNAPSHOT answers why")
    func backoffHolds() async throws {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(port: try LoopbackListener.freePort(), frequency: 5)
        let running = RunningCollector(repository: repository)
        let client = try await ControlClient.connect(repository)
        defer { client.close() }
        let down = "WORKERS_STATUS OK {\"\(server)\": \"no connection to remote server\"}"
        #expect(try await client.waitForStatus { $0 == down } == down)
        #expect(
            try await client.ask("FORCE_SNAPSHOT f1 \(server)", channel: "f1")
                == "FORCE_SNAPSHOT ERROR No snapshot possible now: the worker is no connection to remote server")

        // Requests that used to cut every backoff short: thousands of attempts in 3 s.
        let attempts = { running.logs.lines.filter { $0.contains("could not connect to the remote server") }.count }
        let before = attempts()
        for _ in 0..<5 {
            try await client.send("FORCE_SNAPSHOT - \(server)")
            try await client.send("RELOAD")
        }
        // Over 3 s, the backoff doubling from 1 s allows a few attempts, never more than 4. The
        // 3 s are the window a rate is counted over: requests that cut the backoff short make
        // thousands of attempts in it, crossing 4 within milliseconds.
        #expect(!(try await eventually(timeout: .seconds(3)) { attempts() - before > 4 }))
        #expect(attempts() - before <= 4, "\(attempts() - before) connection attempts in 3 s")
        try await running.stop()
        // Logged once at error level, then at debug level; one line per event (libpq's
        // "...refused\n\tIs the server running..." included).
        let errors = running.logs.lines.filter { $0.hasPrefix("error") && $0.contains("could not connect") }
        #expect(errors.count == 1, "\(errors)")
        #expect(running.logs.lines.allSatisfy { !$0.contains("\n") })
    }

    @Test("a remote that is down: its connection error is shown to powa-web once, whichever worker of the server meets it")
    func connectionErrorShownOnce() async throws {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(port: try LoopbackListener.freePort(), frequency: 5)
        let running = RunningCollector(repository: repository)
        _ = try await repository.waitForErrors(server, containing: "could not connect to the remote server")
        // A new worker for the server (its row changed, then a reload) meets the same error.
        try await repository.execute("UPDATE powa_servers SET alias = 'renamed' WHERE id = \(server)")
        #expect(await running.collector.reload())
        let reported = { running.logs.lines.filter { $0.hasPrefix("error") && $0.contains("could not connect") }.count }
        #expect(try await eventually { reported() == 2 })
        // The new worker records its error (or not) before its next attempt; the old one was
        // stopped by the reload. So once that attempt is logged, the error is shown or never.
        let attempts = { running.logs.lines.filter { $0.contains("could not connect") }.count }
        let seen = attempts()
        #expect(try await eventually { attempts() > seen })
        let errors = try await repository.errors(server)
        try await running.stop()
        #expect(errors.split(separator: "\n").count == 1, "\(errors)")
    }

    @Test("a remote whose powa is installed after start: snapshots begin at the next period, no reload")
    func powaInstalledLater() async throws {
        let bed = try await TestBed.shared()
        let database = "late_powa_\(UInt32.random(in: 0...UInt32.max))"
        try await PoWA5Tests.onRemote(bed, "CREATE DATABASE \(database)", database: "postgres")
        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(port: bed.remotePorts[0], dbname: database, frequency: 5, extensions: "{}")
        let running = RunningCollector(repository: repository)
        _ = try await repository.waitForErrors(server, containing: "the powa extension is not installed")
        #expect(running.collector.board.statuses()[server] == .powaMissing)

        try await PoWA5Tests.onRemote(bed, "SET client_min_messages = warning; CREATE EXTENSION powa CASCADE", database: database)
        #expect(try await repository.waitForSnapshots(server, count: 1, timeout: .seconds(30)).count == 1)
        #expect(running.collector.board.statuses()[server] == .running)
        #expect(try await repository.errors(server) == "")
        try await running.stop()
    }

    @Test("a remote restarted between two snapshots: no error in powa-web, no period lost")
    func remoteRestart() async throws {
        try await TestBed.withPrivate(name: "remote-restart", port: 5445, remotes: 1) { bed in
            let repository = try await ScratchRepository.create(on: bed)
            let server = try await repository.register(port: bed.remotePorts[0], frequency: 5)
            let running = RunningCollector(repository: repository)
            let first = try #require(try await repository.waitForSnapshots(server, count: 1).last)
            try await bed.pgCtl(bed.remoteDataDirectories[0], ["restart", "-m", "fast"])
            let next = try await repository.waitForSnapshots(server, count: 2, after: first, timeout: .seconds(30))
            #expect(next.count == 2)
            if let second = next.first {
                #expect(
                    second - first < 5 * 1.5,
                    "a period was lost: \(second - first) s\n\(running.logs.lines.joined(separator: "\n"))")
            }
            #expect(try await repository.errors(server) == "")
            try await running.stop()
        }
    }
}

@Suite("Start-up signals", .timeLimit(.minutes(2)))
struct StartupSignalTests {
    /// How the repository cannot be reached: nobody listens (refused at once), a listener
    /// that accepts and never answers (a frozen server: only the deadline ends the attempt), or
    /// a host name whose lookup hangs (a DNS server that never answers: libpq's lookup blocks a
    /// thread, and only the deadline ends the attempt).
    enum Unreachable: String, CaseIterable, Sendable { case refused, frozen, hungLookup }

    @Test(
        "while the repository cannot be reached: each attempt logged within its deadline (at error level once, then debug), SIGHUP does not kill the daemon, SIGTERM and SIGINT stop it at once",
        arguments: [SIGTERM, SIGINT], Unreachable.allCases)
    func signalsDuringStartup(stop: Int32, unreachable: Unreachable) async throws {
        let listener = unreachable == .frozen ? try LoopbackListener() : nil
        defer { listener?.close() }
        let resolver = unreachable == .hungLookup ? try SilentResolver() : nil
        let port = try listener?.port ?? LoopbackListener.freePort()
        let host = resolver == nil ? "127.0.0.1" : "powa-repository.test"
        var configuration = CollectorConfiguration(repositoryDSN: "host=\(host) port=\(port) dbname=powa user=postgres")
        configuration.connectTimeout = 2
        configuration.debug = true
        let arguments = ["--config", try writeConfiguration(configuration)]
        let (executable, commandLine) =
            resolver?.command(DaemonProcess.collectorBinary, arguments) ?? (DaemonProcess.collectorBinary, arguments)
        let daemon = try DaemonProcess(executable, commandLine)
        let started = ContinuousClock.now
        #expect(try await daemon.waitForOutput("cannot reach the repository", timeout: .seconds(5)))
        #expect(ContinuousClock.now - started < .seconds(4), "the first attempt outlived its 2 s deadline")
        daemon.signal(SIGHUP)
        // Still there after SIGHUP: it tries again, and was not killed by SIGHUP.
        #expect(try await daemon.waitForOutput("cannot reach the repository", count: 2, timeout: .seconds(8)))
        let attempts = daemon.output.split(separator: "\n").filter { $0.contains("cannot reach the repository") }
        #expect(attempts.first?.contains(" error ") == true && attempts.dropFirst().allSatisfy { $0.contains(" debug ") })
        let sent = ContinuousClock.now
        daemon.signal(stop)
        let code = await daemon.wait()
        #expect(code == 0, "\(daemon.output)")
        #expect(ContinuousClock.now - sent < .seconds(2))
    }
}

/// A collector with one running server, and `powa_servers` locked by another session: a
/// reload's server list then waits (until its 2 s lock_timeout).
private struct LockedServerList {
    let repository: ScratchRepository
    let running: RunningCollector
    let client: ControlClient
    /// The WORKERS_STATUS answer while the server runs.
    let listed: String
    /// The session holding the lock, in its transaction.
    let locker: PostgresConnection

    static func start() async throws -> LockedServerList {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(port: bed.remotePorts[1], frequency: 3600)
        let running = RunningCollector(repository: repository)
        let client = try await ControlClient.connect(repository)
        let listed = "WORKERS_STATUS OK {\"\(server)\": \"running\"}"
        #expect(try await client.waitForStatus { $0 == listed } == listed)
        let locker = try await repository.connect()
        try await locker.execute("BEGIN; LOCK TABLE powa_servers IN ACCESS EXCLUSIVE MODE")
        return LockedServerList(repository: repository, running: running, client: client, listed: listed, locker: locker)
    }

    func close() {
        client.close()
        locker.close()
    }
}

@Suite("Reloads", .timeLimit(.minutes(3)))
struct ReloadTests {
    @Test("ten RELOADs in a row while the server changes: one reload at a time, one worker, always listed")
    func reloadStorm() async throws {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        let tag = "storm\(UInt32.random(in: 0...UInt32.max))"
        let server = try await repository.register(port: bed.remotePorts[0], alias: "\(tag)-0")
        let running = RunningCollector(repository: repository) { $0.useServerAlias = true }
        let client = try await ControlClient.connect(repository)
        defer { client.close() }
        let listed = "WORKERS_STATUS OK {\"\(server)\": \"running\"}"
        #expect(try await client.waitForStatus { $0 == listed } == listed)

        // Each reload restarts the worker (its alias changed); answers asked meanwhile must
        // always list it.
        for step in 1...10 {
            try await repository.execute("UPDATE powa_servers SET alias = '\(tag)-\(step)' WHERE id = \(server)")
            try await client.send("RELOAD")
        }
        var answers: [String] = []
        for _ in 0..<10 {
            answers.append(try await client.ask("WORKERS_STATUS s\(answers.count)", channel: "s\(answers.count)") ?? "none")
        }
        #expect(answers.allSatisfy { $0.contains("\"\(server)\":") }, "\(answers)")

        // In the end, one worker session on the remote, the last one's.
        let sessions = {
            try await backendPIDs(bed: bed, port: bed.remotePorts[0], applicationName: "PoWA collector - worker \(tag)-10")
        }
        #expect(try await eventually { try await sessions().count == 1 })
        let remote = try await bed.connect(port: bed.remotePorts[0], database: "postgres")
        defer { remote.close() }
        // Every earlier worker's session gone too. (A backend leaves pg_stat_activity a moment
        // after its client closed: on a loaded machine the last retired worker's may still show.)
        let ours = {
            try await remote.query(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1",
                ["PoWA collector - worker \(tag)-%"]
            ).rows[0].decode(0, as: Int.self)
        }
        #expect(try await eventually { try await ours() == 1 })
        #expect(try await client.waitForStatus { $0 == listed } == listed)
        try await running.stop()
    }

    @Test("while a RELOAD waits for a locked powa_servers, WORKERS_STATUS still answers at once; RELOAD answers after")
    func statusDuringSlowReload() async throws {
        let setup = try await LockedServerList.start()
        let (repository, running, client, listed, locker) = (
            setup.repository, setup.running, setup.client, setup.listed, setup.locker
        )
        defer { setup.close() }
        let reloadClient = try await ControlClient.connect(repository)
        defer { reloadClient.close() }
        try await reloadClient.connection.execute("LISTEN slow_reload")
        try await reloadClient.send("RELOAD slow_reload")
        // powa-web gives WORKERS_STATUS 1 s.
        let started = ContinuousClock.now
        #expect(try await client.ask("WORKERS_STATUS q1", channel: "q1", timeout: .seconds(1)) == listed)
        #expect(ContinuousClock.now - started < .seconds(1))
        try await locker.execute("ROLLBACK")
        let answer = try await reloadClient.connection.nextNotification(deadline: .now + .seconds(10))
        #expect(answer?.payload.hasPrefix("RELOAD ") == true, "\(String(describing: answer))")
        try await running.stop()
    }

    @Test("a graceful shutdown does not wait for a reload stuck on a locked powa_servers")
    func shutdownDuringSlowReload() async throws {
        let setup = try await LockedServerList.start()
        let (repository, running, client, locker) = (setup.repository, setup.running, setup.client, setup.locker)
        defer { setup.close() }
        try await client.send("RELOAD")
        let observer = try await repository.connect()
        defer { observer.close() }
        #expect(
            try await eventually(interval: .milliseconds(20)) {
                try await observer.query(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'powa_servers'::regclass"
                ).rows[0].decode(0, as: Int.self) > 0
            })
        let stopping = ContinuousClock.now
        try await running.stop()
        #expect(ContinuousClock.now - stopping < .seconds(1))
        try await locker.execute("ROLLBACK")
    }

    @Test("max_concurrent_snapshots raised on reload: two snapshots now run at once")
    func permitsFollowReload() async throws {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        var servers: [Int] = []
        for (index, port) in bed.remotePorts.enumerated() {
            let server = try await repository.register(port: port, alias: "permits-\(index)", frequency: 3600)
            try await addSlowSource(
                repository: repository, serverID: server, remotePort: port, seconds: 3, name: "permits_slow_src")
            servers.append(server)
        }
        try await repository.execute("UPDATE powa_snapshot_metas SET snapts = now() WHERE srvid > 0")
        let running = RunningCollector(repository: repository) { $0.maxConcurrentSnapshots = 1 }
        var configuration = running.collector.configuration
        configuration.maxConcurrentSnapshots = 2
        try configuration.json.write(toFile: running.configurationPath, atomically: true, encoding: .utf8)
        #expect(await running.collector.reload())
        #expect(
            try await eventually {
                let statuses = running.collector.board.statuses()
                return statuses.count == servers.count && statuses.values.allSatisfy { $0 == .running }
            })

        // Both at once: with two slots, both slow sources run at the same time.
        for server in servers { try running.collector.board.forceSnapshot(serverID: server) }
        let active = {
            var count = 0
            for port in bed.remotePorts {
                let observer = try await bed.connect(port: port, database: "postgres")
                defer { observer.close() }
                count += try await observer.query(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%permits_slow_src%' AND pid <> pg_backend_pid()"
                ).rows[0].decode(0, as: Int.self)
            }
            return count
        }
        #expect(try await eventually(timeout: .seconds(10), interval: .milliseconds(50)) { try await active() == 2 })
        try await running.stop()
    }
}

@Suite("Pooled sessions", .timeLimit(.minutes(2)))
struct PooledSessionTests {
    @Test("a pooled repository session logs under the worker using it, not the one that opened it")
    func loggerFollowsUser() async throws {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        try await repository.execute(
            """
            CREATE UNLOGGED TABLE public.noisy_src_tmp (srvid int, x int);
            CREATE FUNCTION public.noisy_snapshot(_srvid int) RETURNS void LANGUAGE plpgsql AS $$
            BEGIN
                RAISE WARNING 'noisy snapshot of server %', _srvid;
                DELETE FROM public.noisy_src_tmp WHERE srvid = _srvid;
            END $$;
            """)
        var servers: [Int: String] = [:]
        for (index, port) in bed.remotePorts.enumerated() {
            let remote = try await bed.connect(port: port)
            try await remote.execute(
                "CREATE OR REPLACE FUNCTION public.noisy_src(_srvid int) RETURNS TABLE(x int) LANGUAGE sql AS 'SELECT 1'")
            remote.close()
            let server = try await repository.register(port: port, alias: "noisy-\(index)", frequency: 5)
            try await repository.addSource(
                serverID: server, module: "noisy", querySource: "noisy_src", snapshotFunction: "noisy_snapshot")
            servers[server] = "noisy-\(index)"
        }
        // One slot: one pooled session, used by both workers in turn.
        let running = RunningCollector(repository: repository) {
            $0.maxConcurrentSnapshots = 1
            $0.useServerAlias = true
        }
        let noisy = { running.logs.lines.filter { $0.contains("noisy snapshot of server") } }
        #expect(try await eventually(timeout: .seconds(30)) { Set(noisy().map { $0.contains("noisy-0") }).count == 2 })
        try await running.stop()
        for line in noisy() {
            let server = try #require(servers.first { line.contains("noisy snapshot of server \($0.key) ") })
            #expect(line.contains("worker=\(server.value)"), "\(line)")
        }
    }
}

@Suite("Hung remotes", .timeLimit(.minutes(3)))
struct HungRemoteTests {
    @Test("six servers whose sources hang cannot starve three healthy ones of the two snapshot slots")
    func healthyServersKeepCadence() async throws {
        // A bed of its own with three remote clusters, each reached under three names: the
        // six servers of the first two hang, the three of the third are healthy.
        try await TestBed.withPrivate(name: "hung", port: 5436, remotes: 3) { bed in
            let repository = try await ScratchRepository.create(on: bed)
            let hosts = ["127.0.0.1", "localhost", bed.socketDirectory]
            var hung: [Int] = []
            var healthy: [Int] = []
            for host in hosts {
                for port in bed.remotePorts.prefix(2) {
                    let server = try await repository.register(port: port, hostname: host, frequency: 5)
                    try await addSlowSource(
                        repository: repository, serverID: server, remotePort: port, seconds: 600, name: "starving_src")
                    hung.append(server)
                }
                healthy.append(try await repository.register(port: bed.remotePorts[2], hostname: host, frequency: 5))
            }
            // Each hung snapshot holds a slot for 4.5 s of every 5: without a lane of their own,
            // the healthy servers queue behind them for both slots; with it, they keep one.
            let running = RunningCollector(repository: repository) {
                $0.maxConcurrentSnapshots = 2
                $0.snapshotTimeout = 4.5
            }
            for server in hung { _ = try await repository.waitForErrors(server, containing: "snapshot timed out") }
            let gaps = try await withThrowingTaskGroup(of: [Double].self) { group in
                for server in healthy {
                    group.addTask {
                        // The first may have waited for a slot while the hung servers were not
                        // known as such yet: the cadence is measured from the next one.
                        let times = try await repository.waitForSnapshots(server, count: 5).dropFirst(2)
                        return zip(times, times.dropFirst()).map { $1 - $0 }
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            try await running.stop()
            #expect(gaps.count == 6)
            // Never starved: at most 1.5 s late (without the lane: about 11 s). A snapshot that
            // waited for its slot may be followed by the next one on time, but never within
            // half a period (less a margin for when each transaction takes its instant).
            #expect(gaps.allSatisfy { $0 <= 5 + 1.5 && $0 >= 2.4 }, "\(gaps)")
        }
    }
}
