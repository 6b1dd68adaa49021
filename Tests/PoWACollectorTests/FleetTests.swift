import Foundation
import PoWACollector
import PostgresClient
import TestBed
import TestWaiting
import Testing

/// Several collector processes on one repository: each server snapshotted by exactly one, at
/// its cadence, through deaths, hangs and arrivals.
/// One at a time: each runs several daemon processes, and together they would load 2 cores
/// enough to disturb the timing tests of other suites.
@Suite("Several collectors on one repository", .serialized, .timeLimit(.minutes(5)))
struct FleetTests {
    static let frequency = 5.0

    @Test(
        "3 collectors, 9 servers: 3 ± 1 each, on cadence; SIGKILL, SIGSTOP and a 4th collector move only what must move, never a doubled snapshot"
    )
    func fleet() async throws {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        let log = try await SnapshotLog.install(on: repository)
        let servers = try await Self.registerServers(9, on: repository, bed: bed)
        let configuration = try Self.configuration(repository)
        var collectors = try (0..<3).map { _ in try FleetCollector(configuration: configuration) }
        defer { collectors.forEach { $0.process.signal(SIGKILL) } }

        // Divided evenly, and every server snapshotted at its cadence for 60 s.
        let divided = try await eventually(timeout: .seconds(40)) {
            let owners = try await log.owners()
            let loads = Dictionary(grouping: owners.values, by: { $0 }).mapValues(\.count)
            return owners.count == 9 && loads.count == 3 && loads.values.allSatisfy { (2...4).contains($0) }
        }
        let firstOwners = try await log.owners()
        #expect(divided, "\(firstOwners)")
        for collector in collectors { try await collector.learnMemberID() }
        // The 60 s watched: a window of observation, not a wait for an event.
        let steadyStart = try await log.now()
        try await Task.sleep(for: .seconds(60))
        let steady = try await log.snapshots(from: steadyStart)
        for server in servers {
            let times = steady[server] ?? []
            #expect(times.count >= 11, "server \(server): \(times.count) snapshots in 60 s")
            for gap in zip(times, times.dropFirst()).map({ $1 - $0 }) {
                #expect(gap >= Self.frequency / 2 && gap <= Self.frequency * 1.7, "server \(server): a gap of \(gap) s")
            }
        }

        // SIGKILL: the servers of the dead one resume on the others within frequency + 10 s.
        var owners = try await log.owners()
        let killed = collectors.removeFirst()
        let orphans = owners.filter { $0.value == killed.memberID }.map(\.key)
        killed.process.signal(SIGKILL)
        let killedAt = try await log.now()
        for server in orphans {
            let resumed = try await log.waitForSnapshot(of: server, after: killedAt, timeout: .seconds(30))
            #expect(resumed.map { $0 - killedAt <= Self.frequency + 10 } == true, "server \(server): \(resumed ?? -1)")
        }
        let client = try await ControlClient.connect(repository)
        defer { client.close() }
        let allRunning = "{" + servers.sorted().map { "\"\($0)\": \"running\"" }.joined(separator: ", ") + "}"
        #expect(
            try await client.waitForStatus({ $0 == "WORKERS_STATUS OK \(allRunning)" }, timeout: .seconds(20))
                == "WORKERS_STATUS OK \(allRunning)")

        // SIGSTOP: the hung one's lease ends, the other takes its servers within
        // frequency + 15 s; once resumed, it snapshots only what it owns again.
        owners = try await log.owners()
        let hung = collectors[0]
        let hungServers = owners.filter { $0.value == hung.memberID }.map(\.key)
        #expect(!hungServers.isEmpty)
        hung.process.signal(SIGSTOP)
        let stoppedAt = try await log.now()
        for server in hungServers {
            let resumed = try await log.waitForSnapshot(of: server, after: stoppedAt, timeout: .seconds(40))
            #expect(resumed.map { $0 - stoppedAt <= Self.frequency + 15 } == true, "server \(server): \(resumed ?? -1)")
        }
        hung.process.signal(SIGCONT)
        #expect(try await hung.process.waitForOutput("fleet: joined", count: 2, timeout: .seconds(30)))
        try await hung.learnMemberID(occurrence: 2)
        #expect(
            try await eventually(timeout: .seconds(30)) {
                let loads = Dictionary(grouping: try await log.owners().values, by: { $0 }).mapValues(\.count)
                return loads.count == 2 && loads.values.sorted() == [4, 5]
            })

        // A fourth collector (the third alive): servers move only to it, 3 of them.
        let before = try await log.owners()
        let joinedAt = try await log.now()
        let newcomer = try FleetCollector(configuration: configuration)
        collectors.append(newcomer)
        try await newcomer.learnMemberID()
        #expect(
            try await eventually(timeout: .seconds(30)) {
                let loads = Dictionary(grouping: try await log.owners().values, by: { $0 }).mapValues(\.count)
                return loads.count == 3 && loads.values.allSatisfy { $0 == 3 }
            })
        let after = try await log.owners()
        let moved = servers.filter { before[$0] != after[$0] }
        #expect(moved.count == 3 && moved.allSatisfy { after[$0] == newcomer.memberID }, "\(before) → \(after)")
        let settled = try await log.now()
        for server in moved { _ = try await log.waitForSnapshot(of: server, after: settled, timeout: .seconds(20)) }
        // Handed over without a lost period: the old owner finished its snapshot, the new one
        // kept the phase. (A hand-over takes two ticks, 2 s each, and a worker's start: at
        // frequency 5 on a loaded machine, that much on top of the period.)
        let handover = try await log.snapshots(from: joinedAt - Self.frequency)
        for server in moved {
            let times = handover[server] ?? []
            for gap in zip(times, times.dropFirst()).map({ $1 - $0 }) {
                #expect(gap < Self.frequency * 2 + 4, "server \(server): no snapshot for \(gap) s while it moved")
            }
        }

        // Over the whole run: never two snapshots of a server in one period, no error for
        // powa-web, and powa's own concurrency guard never tripped.
        #expect(try await log.doubled(within: Self.frequency / 2) == [])
        for server in servers { #expect(try await repository.errors(server) == "", "server \(server)") }
        for collector in collectors {
            #expect(!collector.process.output.contains("Could not lock the powa_snapshot_metas record"))
            #expect(await collector.stop() == 0)
        }
    }

    @Test("two collectors started at the same moment on an empty fleet: no server snapshotted twice")
    func simultaneousStart() async throws {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        let log = try await SnapshotLog.install(on: repository)
        let servers = try await Self.registerServers(6, on: repository, bed: bed)
        let configuration = try Self.configuration(repository)
        let collectors = try (0..<2).map { _ in try FleetCollector(configuration: configuration) }
        defer { collectors.forEach { $0.process.signal(SIGKILL) } }
        let start = try await log.now()
        #expect(
            try await eventually(timeout: .seconds(60)) {
                let counts = try await log.snapshots(from: start).mapValues(\.count)
                return servers.allSatisfy { counts[$0, default: 0] >= 3 }
            })
        let loads = Dictionary(grouping: try await log.owners().values, by: { $0 }).mapValues(\.count)
        #expect(loads.values.sorted() == [3, 3])
        #expect(try await log.doubled(within: Self.frequency / 2) == [])
        for collector in collectors {
            #expect(await collector.stop() == 0)
        }
    }

    @Test(
        "the leader alone answers for the fleet: WORKERS_STATUS lists every server, FORCE_SNAPSHOT reaches the owner, RELOAD reloads every member; the leader killed, powa-web 4.1.4 shows every server running"
    )
    func leaderAnswers() async throws {
        let venv = (ProcessInfo.processInfo.environment["POWA_WEB_VENV"] ?? "/tmp/powa-web-venv") + PoWAMajor.four.suffix
        try await TestBed.run(
            "scripts/powa-web-venv", [], environment: ["POWA_WEB_VENV": venv, "POWA_WEB_VERSION": "4.1.4"])
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        let servers = try await Self.registerServers(4, on: repository, bed: bed)
        let configuration = try Self.configuration(repository)
        let collectors = try (0..<2).map { _ in try FleetCollector(configuration: configuration) }
        defer { collectors.forEach { $0.process.signal(SIGKILL) } }
        let log = SnapshotLog(repository: repository)
        #expect(
            try await eventually(timeout: .seconds(40)) {
                Set(try await log.owners().values).count == 2
            })
        let client = try await ControlClient.connect(repository)
        defer { client.close() }
        let allRunning = "{" + servers.sorted().map { "\"\($0)\": \"running\"" }.joined(separator: ", ") + "}"
        _ = try await client.waitForStatus { $0 == "WORKERS_STATUS OK \(allRunning)" }

        // One answer, whoever runs the workers (a second one would come within the leader's 3 s
        // wait for an owner's answer).
        let statuses = try await client.answers("WORKERS_STATUS r_all", channel: "r_all", window: .seconds(4))
        #expect(statuses == ["WORKERS_STATUS OK \(allRunning)"])
        for server in servers {
            // (Snapshots every 5 s: the owner's answer is that the last one is too recent, or
            // that one is running; a leader that does not run the server would say "not found".)
            let forced = try await client.answers(
                "FORCE_SNAPSHOT r_force \(server)", channel: "r_force", window: .seconds(4))
            #expect(forced.count == 1, "\(forced)")
            #expect(forced.allSatisfy { !$0.contains("not found") && $0.hasPrefix("FORCE_SNAPSHOT ") }, "\(forced)")
        }
        #expect(
            try await client.answers("FORCE_SNAPSHOT r_none 999999", channel: "r_none", window: .seconds(5))
                == ["FORCE_SNAPSHOT ERROR Server id 999999 not found"])
        #expect(try await client.answers("RELOAD r_reload", channel: "r_reload", window: .seconds(5)) == ["RELOAD OK OK"])
        for collector in collectors {
            #expect(try await collector.process.waitForOutput("configuration reloaded", timeout: .seconds(10)))
        }

        // The leader dies: the other one leads, takes every server, and powa-web 4.1.4's
        // config page shows them all running.
        for collector in collectors { try await collector.learnMemberID() }
        let leaderID = try await log.leader()
        let leader = try #require(collectors.first { $0.memberID == leaderID }, "leader \(String(describing: leaderID))")
        leader.process.signal(SIGKILL)
        let survivors = collectors.filter { $0 !== leader }
        #expect(
            try await eventually(timeout: .seconds(20)) {
                let leads = try await log.leader() == survivors[0].memberID
                let owners = Set(try await log.owners().values)
                return leads && owners == [survivors[0].memberID]
            })
        let web = try await PowaWeb.start(venv: venv, bed: bed, database: repository.database, major: .four)
        do {
            try await web.login()
            let shown = try await web.serverStatuses(until: { shown in servers.allSatisfy { shown[$0] == "running" } })
            #expect(servers.allSatisfy { shown[$0] == "running" }, "\(shown)")
        } catch {
            await web.stop()
            throw error
        }
        _ = await web.stop()
        for collector in survivors {
            #expect(await collector.stop() == 0)
        }
    }

    @Test("a server added and RELOADed gets its worker at once, not at the membership's next tick")
    func reloadTakesNewServers() async throws {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        let first = try await repository.register(port: bed.remotePorts[0], frequency: 5)
        let running = RunningCollector(repository: repository)
        let client = try await ControlClient.connect(repository)
        defer { client.close() }
        _ = try await client.waitForStatus { $0 == "WORKERS_STATUS OK {\"\(first)\": \"running\"}" }
        for round in 0..<3 {
            let added = try await repository.register(port: bed.remotePorts[1], hostname: "host-\(round).invalid")
            #expect(try await client.ask("RELOAD r_add", channel: "r_add", timeout: .seconds(10)) == "RELOAD OK OK")
            let reloaded = ContinuousClock.now
            let listed = try await eventually(timeout: .seconds(1), interval: .milliseconds(20)) {
                try await client.ask("WORKERS_STATUS r_one \(added)", channel: "r_one", timeout: .seconds(1))?
                    .contains("\"\(added)\"") == true
            }
            #expect(listed, "round \(round): not listed \(ContinuousClock.now - reloaded) after RELOAD")
        }
        try await running.stop()
    }

    @Test("servers taken over while every reload fails (powa_servers locked) still get their workers")
    func takeoverDuringFailingReloads() async throws {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        let log = try await SnapshotLog.install(on: repository)
        _ = try await Self.registerServers(4, on: repository, bed: bed)
        let configuration = try Self.configuration(repository)
        let collectors = try (0..<2).map { _ in try FleetCollector(configuration: configuration) }
        defer { collectors.forEach { $0.process.signal(SIGKILL) } }
        #expect(try await eventually(timeout: .seconds(40)) { Set(try await log.owners().values).count == 2 })
        for collector in collectors { try await collector.learnMemberID() }
        let orphans = try await log.owners().filter { $0.value == collectors[0].memberID }.map(\.key)

        // Every reload now fails on its lock_timeout, and a RELOAD arrives every 300 ms while
        // the survivor takes the dead one's servers.
        let locker = try await repository.connect()
        defer { locker.close() }
        try await locker.execute("BEGIN; LOCK powa_servers IN ACCESS EXCLUSIVE MODE")
        let client = try await ControlClient.connect(repository)
        defer { client.close() }
        collectors[0].process.signal(SIGKILL)
        let killed = ContinuousClock.now
        while ContinuousClock.now - killed < .seconds(6) {
            try await client.send("RELOAD")
            try await Task.sleep(for: .milliseconds(300))
        }
        #expect(
            try await eventually(timeout: .seconds(20)) { Set(try await log.owners().values) == [collectors[1].memberID] })
        // The reloads still queued fail too (one running, one waiting: runs follow each other
        // while RELOADs keep coming); then the list is free again, and no reload comes.
        let failures = collectors[1].process.output.components(separatedBy: "could not read the list of servers").count - 1
        _ = try await collectors[1].process.waitForOutput(
            "could not read the list of servers", count: failures + 2, timeout: .seconds(10))
        let released = try await log.now()
        try await locker.execute("ROLLBACK")
        for server in orphans {
            let resumed = try await log.waitForSnapshot(of: server, after: released, timeout: .seconds(45))
            #expect(resumed != nil, "server \(server), taken over during failing reloads, is never snapshotted")
        }
        #expect(await collectors[1].stop() == 0)
    }

    @Test("a reload that moves repository.dsn: the membership follows, snapshots land in the new repository")
    func repositoryMoved() async throws {
        let bed = try await TestBed.shared()
        let old = try await ScratchRepository.create(on: bed)
        let new = try await ScratchRepository.create(on: bed)
        _ = try await old.register(port: bed.remotePorts[0], frequency: 5)
        let moved = try await new.register(port: bed.remotePorts[1], frequency: 5)
        let running = RunningCollector(repository: old)
        _ = try await old.waitForSnapshots(1, count: 1)
        var configuration = running.collector.configuration
        configuration.repositoryDSN = new.dsn
        try configuration.json.write(toFile: running.configurationPath, atomically: true, encoding: .utf8)
        #expect(await running.collector.reload())
        let snapshots = try await new.waitForSnapshots(moved, count: 2, timeout: .seconds(30))
        #expect(snapshots.count == 2)
        let rolledBack = running.logs.lines.filter { $0.contains("no longer owns the server") }
        #expect(rolledBack.count <= 3, "\(rolledBack.count) snapshots rolled back after the move")
        try await running.stop()
    }

    @Test("servers given up to a newcomer move at once, without waiting for the slow snapshot of another one")
    func givingUpDoesNotWaitForSlowSnapshots() async throws {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        let log = try await SnapshotLog.install(on: repository)
        let servers = try await Self.registerServers(8, on: repository, bed: bed)
        // The servers of the first remote take 25 s a snapshot, the others a moment.
        let slow = Set(servers.enumerated().filter { $0.offset % 2 == 0 }.map(\.element))
        for server in slow {
            try await addSlowSource(
                repository: repository, serverID: server, remotePort: bed.remotePorts[0], seconds: 25,
                name: "fleet_slow_src")
        }
        let configuration = try Self.configuration(repository)
        let first = try FleetCollector(configuration: configuration)
        defer { first.process.signal(SIGKILL) }
        try await first.learnMemberID()
        #expect(try await eventually(timeout: .seconds(30)) { try await log.owners().count == 8 })
        try await waitForActiveQuery(bed: bed, port: bed.remotePorts[0], like: "%fleet_slow_src%")

        // A newcomer takes half: the fast servers among them move in a couple of ticks, while
        // the slow ones' snapshots still have over 20 s to run.
        let newcomer = try FleetCollector(configuration: configuration)
        defer { newcomer.process.signal(SIGKILL) }
        try await newcomer.learnMemberID()
        let joined = try await log.now()
        #expect(
            try await eventually(timeout: .seconds(60)) {
                try await log.owners().values.filter { $0 == newcomer.memberID }.count == 4
            })
        let moved = try await log.owners().filter { $0.value == newcomer.memberID }.map(\.key)
        for server in moved where !slow.contains(server) {
            let resumed = try await log.waitForSnapshot(of: server, after: joined, timeout: .seconds(30))
            #expect(
                resumed.map { $0 - joined < 12 } == true,
                "server \(server): first snapshot by the newcomer \((resumed ?? 0) - joined) s after it joined")
        }
        #expect(await newcomer.stop() == 0)
        #expect(await first.stop() == 0)
    }

    @Test("a collector frozen mid-snapshot, its server taken over meanwhile: resumed, it reports nothing for powa-web")
    func frozenOwnerReportsNothing() async throws {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        let log = try await SnapshotLog.install(on: repository)
        let servers = try await Self.registerServers(1, on: repository, bed: bed)
        let server = try #require(servers.first)
        try await addSlowSource(
            repository: repository, serverID: server, remotePort: bed.remotePorts[0], seconds: 3,
            name: "fleet_frozen_src")
        // A snapshot timeout shorter than the freeze: the frozen snapshot fails once resumed.
        var settings = CollectorConfiguration(repositoryDSN: repository.dsn)
        settings.connectTimeout = 3
        settings.snapshotTimeout = 6
        let configuration = try writeConfiguration(settings)
        let collectors = try (0..<2).map { _ in try FleetCollector(configuration: configuration) }
        defer { collectors.forEach { $0.process.signal(SIGKILL) } }
        for collector in collectors { try await collector.learnMemberID() }
        _ = try await repository.waitForSnapshots(server, count: 1)
        let ownerID = try #require(try await log.owners()[server])
        let owner = try #require(collectors.first { $0.memberID == ownerID })

        try await waitForActiveQuery(bed: bed, port: bed.remotePorts[0], like: "%fleet_frozen_src%")
        owner.process.signal(SIGSTOP)
        let stoppedAt = try await log.now()
        _ = try await log.waitForSnapshot(of: server, after: stoppedAt, timeout: .seconds(40))
        owner.process.signal(SIGCONT)
        #expect(try await owner.process.waitForOutput("snapshot failed", timeout: .seconds(30)))
        // Its failure is no failure of the server's, which the other collector snapshots well.
        // Were the failure recorded, it would be by what follows its log line: at most a new
        // repository session and an append, each bounded by connect_timeout (3 s). 7 s from
        // now bound them both, so a recorded failure would show within the window.
        var errors = ""
        _ = try await eventually(timeout: .seconds(7)) {
            errors = try await repository.errors(server)
            return errors != ""
        }
        #expect(errors == "")
    }

    @Test(
        "the repository restarted under 2 collectors, one back later: each gets back its servers under its member id, none owned by the other meanwhile"
    )
    func repositoryRestart() async throws {
        try await TestBed.withPrivate(name: "fleet-restart", port: 5470, remotes: 2) { bed in
            let (log, collectors, before) = try await Self.dividedFleet(on: bed)
            defer { collectors.forEach { $0.process.signal(SIGKILL) } }
            let (first, late) = (collectors[0], collectors[1])
            var strays = OwnershipStrays(expected: before)

            // The late one frozen through the restart: the first is back alone for a while, and
            // takes back its own servers only.
            late.process.signal(SIGSTOP)
            try await bed.pgCtl(bed.repositoryDataDirectory, ["stop", "-m", "fast"])
            try await bed.pgCtl(bed.repositoryDataDirectory, ["start"])
            let firstBack = try await eventually(timeout: .seconds(30)) {
                let owners = await strays.sample(log)
                return before.allSatisfy { $0.value != first.memberID || owners[$0.key] == first.memberID }
            }
            #expect(firstBack, "the first collector never took its servers back")
            late.process.signal(SIGCONT)
            let settled = try await eventually(timeout: .seconds(40)) {
                let owners = await strays.sample(log)
                return owners == before && collectors.allSatisfy { $0.process.output.contains("fleet: rejoin grace over") }
            }
            let after = try await log.owners()
            #expect(settled, "\(after) after the restart, \(before) before")
            for collector in collectors {
                let id = collector.memberID
                try await collector.learnMemberID(occurrence: 2)
                #expect(collector.memberID == id, "member \(id) rejoined as \(collector.memberID)")
            }
            #expect(strays.seen.isEmpty, "\(strays.seen.sorted())")
            let restarted = try await log.now()
            for server in before.keys {
                _ = try await log.waitForSnapshot(of: server, after: restarted, timeout: .seconds(20))
                #expect(await strays.sample(log) == before)
            }
            #expect(strays.seen.isEmpty, "\(strays.seen.sorted())")
            for collector in collectors { #expect(await collector.stop() == 0) }
        }
    }

    @Test(
        "a collector whose member id is still held when it rejoins waits for it rather than draw another, and gets its servers back"
    )
    func memberIDHeldAtRejoin() async throws {
        let bed = try await TestBed.shared()
        let (log, collectors, before) = try await Self.dividedFleet(on: bed)
        defer { collectors.forEach { $0.process.signal(SIGKILL) } }
        let repository = log.repository
        let away = collectors[0]
        var strays = OwnershipStrays(expected: before)

        // Its membership session ends, and a session of the test's takes its member id at once,
        // as its previous session would still hold it.
        let holder = try await repository.connect()
        defer { holder.close() }
        let session = try #require(
            try await repository.value(
                """
                SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2
                  AND classid = 1886353249 AND objid = $1::int8::oid
                  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                """, ["\(away.memberID)"]))
        try await holder.execute(
            "SELECT pg_terminate_backend(\(session)), pg_advisory_lock(1886353249, \(away.memberID))")
        let waited = try await eventually(timeout: .seconds(10)) {
            _ = await strays.sample(log)
            return away.process.output.components(separatedBy: "fleet: member id still held").count > 2
        }
        #expect(waited, "the collector did not wait for its member id")
        try await holder.execute("SELECT pg_advisory_unlock(1886353249, \(away.memberID))")

        let id = away.memberID
        try await away.learnMemberID(occurrence: 2)
        #expect(away.memberID == id, "member \(id) rejoined as \(away.memberID)")
        #expect(try await eventually(timeout: .seconds(20)) { await strays.sample(log) == before })
        #expect(strays.seen.isEmpty, "\(strays.seen.sorted())")
        for collector in collectors { #expect(await collector.stop() == 0) }
    }

    /// 6 servers divided between 2 collectors, each with its member id known: the snapshot log,
    /// the collectors, and who owns what.
    static func dividedFleet(on bed: TestBed) async throws -> (SnapshotLog, [FleetCollector], [Int: Int]) {
        let repository = try await ScratchRepository.create(on: bed)
        let log = try await SnapshotLog.install(on: repository)
        _ = try await Self.registerServers(6, on: repository, bed: bed)
        let configuration = try Self.configuration(repository)
        let collectors = try (0..<2).map { _ in try FleetCollector(configuration: configuration) }
        do {
            for collector in collectors { try await collector.learnMemberID() }
            let divided = try await eventually(timeout: .seconds(40)) {
                let loads = Dictionary(grouping: try await log.owners().values, by: { $0 }).mapValues(\.count)
                return loads.values.sorted() == [3, 3]
            }
            let owners = try await log.owners()
            #expect(divided, "\(owners)")
            return (log, collectors, owners)
        } catch {
            collectors.forEach { $0.process.signal(SIGKILL) }
            throw error
        }
    }

    /// `count` servers at frequency 5 on the bed's remotes, each under another name of the
    /// same clusters (`powa_servers` wants one row per host and port).
    static func registerServers(_ count: Int, on repository: ScratchRepository, bed: TestBed) async throws -> [Int] {
        let hostnames = ["127.0.0.1", "localhost", "127.1", bed.socketDirectory, bed.socketDirectory + "/"]
        var servers: [Int] = []
        for index in 0..<count {
            let port = bed.remotePorts[index % bed.remotePorts.count]
            let hostname = hostnames[index / bed.remotePorts.count]
            servers.append(
                try await repository.register(port: port, hostname: hostname, alias: "fleet-\(index)", frequency: 5))
        }
        return servers
    }

    static func configuration(_ repository: ScratchRepository) throws -> String {
        var configuration = CollectorConfiguration(repositoryDSN: repository.dsn)
        configuration.connectTimeout = 3
        configuration.snapshotTimeout = 30
        configuration.useServerAlias = true
        return try writeConfiguration(configuration)
    }
}

/// One collector process of a fleet test.
final class FleetCollector: @unchecked Sendable {
    let process: DaemonProcess
    /// Its member id, from its log (set by `learnMemberID`; only the test's task touches it).
    private(set) var memberID = 0

    init(configuration path: String) throws {
        process = try DaemonProcess(DaemonProcess.collectorBinary, ["--config", path])
    }

    /// SIGTERM, and its exit code (nil: still running 20 s later, killed).
    func stop() async -> Int32? {
        process.signal(SIGTERM)
        return await process.wait(orKillAfter: .seconds(20))
    }

    /// Reads the member id of its `occurrence`-th membership from its log.
    func learnMemberID(occurrence: Int = 1) async throws {
        #expect(try await process.waitForOutput("fleet: joined", count: occurrence, timeout: .seconds(30)))
        let lines = process.output.split(separator: "\n").filter { $0.contains("fleet: joined") }
        guard lines.count >= occurrence, let range = lines[occurrence - 1].range(of: #"member=\d+"#, options: .regularExpression)
        else {
            Issue.record("no member id in: \(lines)")
            return
        }
        memberID = Int(lines[occurrence - 1][range].dropFirst("member=".count)) ?? 0
    }
}

/// Servers seen owned by another member than `expected` says, sampled from `pg_locks` while a
/// test waits (a sample the repository cannot answer, while it restarts, counts as none).
struct OwnershipStrays {
    let expected: [Int: Int]
    private(set) var seen: Set<String> = []

    init(expected: [Int: Int]) { self.expected = expected }

    /// Who owns what now (empty when the repository cannot say), and any stray recorded.
    mutating func sample(_ log: SnapshotLog) async -> [Int: Int] {
        guard let owners = try? await log.owners() else { return [:] }
        for (server, owner) in owners where expected[server] != owner {
            seen.insert("server \(server) owned by \(owner) (by \(expected[server].map(String.init) ?? "none") before)")
        }
        return owners
    }
}

/// Every snapshot that lands in a scratch repository, recorded by a trigger on
/// `powa_snapshot_metas` (rolled back with the snapshot when it is), and who owns what.
struct SnapshotLog {
    let repository: ScratchRepository

    static func install(on repository: ScratchRepository) async throws -> SnapshotLog {
        try await repository.execute(
            """
            CREATE TABLE public.fleet_snapshots (srvid int, snapts float8);
            CREATE FUNCTION public.fleet_snapshot_logged() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO public.fleet_snapshots VALUES (NEW.srvid, extract(epoch FROM NEW.snapts));
                RETURN NEW;
            END $$;
            CREATE TRIGGER fleet_snapshot_logged AFTER UPDATE OF snapts ON powa_snapshot_metas
                FOR EACH ROW WHEN (OLD.snapts IS DISTINCT FROM NEW.snapts)
                EXECUTE FUNCTION public.fleet_snapshot_logged();
            """)
        return SnapshotLog(repository: repository)
    }

    /// The repository's clock, in seconds since the epoch.
    func now() async throws -> Double {
        Double(try await repository.value("SELECT extract(epoch FROM clock_timestamp())") ?? "") ?? 0
    }

    /// The snapshots since `start`, by server, in order.
    func snapshots(from start: Double) async throws -> [Int: [Double]] {
        let connection = try await repository.connect()
        defer { connection.close() }
        let rows = try await connection.query(
            "SELECT srvid, snapts FROM public.fleet_snapshots WHERE snapts >= $1 ORDER BY srvid, snapts", ["\(start)"]
        ).rows
        var result: [Int: [Double]] = [:]
        for row in rows { result[try row.decode(0, as: Int.self), default: []].append(try row.decode(1, as: Double.self)) }
        return result
    }

    /// Snapshots that followed another of the same server by less than `interval` seconds:
    /// "server: gap" for each.
    func doubled(within interval: Double) async throws -> [String] {
        try await snapshots(from: 0).flatMap { server, times in
            zip(times, times.dropFirst()).map { $1 - $0 }.filter { $0 < interval }.map { "\(server): \($0) s" }
        }
    }

    /// The first snapshot of a server after `start`, waited for.
    func waitForSnapshot(of server: Int, after start: Double, timeout: Duration) async throws -> Double? {
        var found: Double?
        _ = try await eventually(timeout: timeout) {
            found = try await snapshots(from: start)[server]?.first { $0 > start }
            return found != nil
        }
        return found
    }

    /// The member id of the leader now.
    func leader() async throws -> Int? {
        try await repository.value(
            """
            SELECT m.objid::int FROM pg_locks l JOIN pg_locks m ON m.pid = l.pid
            WHERE l.locktype = 'advisory' AND m.locktype = 'advisory' AND l.objsubid = 2 AND m.objsubid = 2
              AND l.classid = 1886353249 AND l.objid = 0 AND m.classid = 1886353249 AND m.objid <> 0
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND m.database = l.database
            """
        ).flatMap { Int($0) }
    }

    /// Who owns each server now: its lock's holder, as a member id.
    func owners() async throws -> [Int: Int] {
        let connection = try await repository.connect()
        defer { connection.close() }
        let rows = try await connection.query(
            """
            SELECT s.objid::int, m.objid::int FROM pg_locks s JOIN pg_locks m ON m.pid = s.pid
            WHERE s.locktype = 'advisory' AND m.locktype = 'advisory' AND s.objsubid = 2 AND m.objsubid = 2
              AND s.classid = 1886353250 AND m.classid = 1886353249 AND m.objid <> 0
              AND s.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND m.database = s.database
            """
        ).rows
        var owners: [Int: Int] = [:]
        for row in rows { owners[try row.decode(0, as: Int.self)] = try row.decode(1, as: Int.self) }
        return owners
    }
}
