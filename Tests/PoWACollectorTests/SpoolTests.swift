import Foundation
import PoWACollector
import PostgresClient
import TestBed
import TestWaiting
import Testing

/// Snapshots taken while the repository is down wait in the spool and land, in order, when it
/// is back: the history is as if it had never been down.
@Suite("The spool: nothing lost while the repository is down", .timeLimit(.minutes(4)))
struct SpoolTests {
    static let frequency = 5.0
    /// A statement of its own: its calls count what the test ran.
    static let marker = "SELECT 1 AS spool_marker"

    @Test(
        "an outage of 3 periods: every period's snapshot lands with its own remote ts, in order, none doubled, with the calls of its period",
        arguments: PoWAMajor.allCases)
    func outage(major: PoWAMajor) async throws {
        try await TestBed.withPrivate(name: "spool-outage", port: 5490, remotes: 1, major: major) { bed in
            let repository = try await ScratchRepository.create(on: bed)
            let server = try await repository.register(port: bed.remotePorts[0], frequency: Int(Self.frequency))
            let directory = Self.temporaryDirectory()
            let collector = RunningCollector(repository: repository) { $0.spool = SpoolSettings(directory: directory) }
            let remote = try await bed.connect(port: bed.remotePorts[0])
            defer { remote.close() }
            try await remote.execute(Self.marker)
            // A snapshot that saw the marker (begun after it ran) before the outage.
            _ = try await repository.waitForSnapshots(server, count: 2)
            try await bed.pgCtl(bed.repositoryDataDirectory, ["stop", "-m", "fast"])
            for period in 1...3 {
                // Each period's snapshot spooled, then that many more calls (+1) for the next.
                let spooled = try await eventually(timeout: .seconds(20)) {
                    Self.spooledFiles(directory, server: server).count >= period
                }
                #expect(spooled, "period \(period): \(Self.spooledFiles(directory, server: server))")
                for _ in 0...period { try await remote.execute(Self.marker) }
            }
            #expect(collector.logs.lines.filter { $0.contains("spooling snapshots") }.count == 1)
            try await bed.pgCtl(bed.repositoryDataDirectory, ["start"])
            #expect(try await collector.waitForLog("spool landed", timeout: .seconds(40)))
            #expect(Self.spooledFiles(directory, server: server).isEmpty)
            _ = try await repository.waitForSnapshots(server, count: 1)

            let history = try await Self.markerHistory(repository, server: server)
            // None doubled, every period there: consecutive snapshots a period apart (give or
            // take the schedule's jitter; a lost period is a gap of two), from before the outage to after it.
            #expect(Set(history.map(\.ts)).count == history.count, "\(history)")
            for (earlier, later) in zip(history, history.dropFirst()) {
                #expect(later.ts - earlier.ts <= Self.frequency * 1.8, "a gap in \(history)")
            }
            // The calls of each period: 1 before, then 2, 3 and 4 more, in that order.
            var calls: [Int] = []
            for record in history where calls.last != record.calls { calls.append(record.calls) }
            #expect(calls.suffix(4) == [1, 3, 6, 10], "\(history)")
            if major == .five {
                // The per-database streams landed with them: a row of every spooled instant.
                let tables = try await repository.value(
                    """
                    SELECT count(DISTINCT (record).ts) FROM powa_all_tables_history_current
                    WHERE srvid = $1 AND (record).ts >= to_timestamp($2::float8)
                    """, ["\(server)", "\(history.first { $0.calls == 1 }!.ts)"])
                #expect(Int(tables ?? "") ?? 0 >= 4)
            }
            #expect(try await repository.errors(server) == "")
            try await collector.stop()
        }
    }

    @Test(
        "SIGKILLed while spooling, restarted with the repository up: the spool lands; past spool.max_bytes the oldest is dropped and reported, a truncated file is skipped and reported"
    )
    func killedFullTruncated() async throws {
        try await TestBed.withPrivate(name: "spool-killed", port: 5495, remotes: 1) { bed in
            let repository = try await ScratchRepository.create(on: bed)
            let server = try await repository.register(port: bed.remotePorts[0], frequency: Int(Self.frequency))
            let directory = Self.temporaryDirectory()
            var configuration = CollectorConfiguration(repositoryDSN: repository.dsn)
            configuration.connectTimeout = 3
            configuration.spool = SpoolSettings(directory: directory)
            let first = try DaemonProcess(DaemonProcess.collectorBinary, ["--config", try writeConfiguration(configuration)])
            defer { first.signal(SIGKILL) }
            let remote = try await bed.connect(port: bed.remotePorts[0])
            defer { remote.close() }
            try await remote.execute(Self.marker)
            _ = try await repository.waitForSnapshots(server, count: 2)
            try await bed.pgCtl(bed.repositoryDataDirectory, ["stop", "-m", "fast"])
            let spooled = try await eventually(timeout: .seconds(30)) {
                Self.spooledFiles(directory, server: server).count >= 4
            }
            #expect(spooled)
            first.signal(SIGKILL)
            _ = await first.wait()
            let files = Self.spooledFiles(directory, server: server)
            try #require(files.count >= 4)
            // The second file loses its end; the spool's bound leaves out the first.
            let truncated = files[1]
            let size = try Self.size(truncated)
            try FileHandle(forWritingTo: URL(fileURLWithPath: truncated)).truncate(atOffset: UInt64(size / 2))
            let total = try files.map(Self.size).reduce(0, +)
            configuration.spool?.maxBytes = total - (try Self.size(files[0]))
            try await bed.pgCtl(bed.repositoryDataDirectory, ["start"])
            let before = try await Self.markerHistory(repository, server: server)

            let second = try DaemonProcess(DaemonProcess.collectorBinary, ["--config", try writeConfiguration(configuration)])
            defer { second.signal(SIGKILL) }
            #expect(try await second.waitForOutput("spool landed", timeout: .seconds(40)))
            let errors = try await repository.waitForErrors(server, containing: "unreadable spool file")
            #expect(errors.contains("1 snapshot taken while the repository was unreachable was dropped: spool full"))
            #expect(errors.contains("1 snapshot taken while the repository was unreachable was dropped: unreadable spool file"))
            #expect(FileManager.default.fileExists(atPath: truncated.replacingOccurrences(of: ".snapshot", with: ".damaged")))
            // The others landed, once each, in order: as many new instants as files kept.
            let after = try await Self.markerHistory(repository, server: server)
            let landed = after.filter { record in !before.contains { $0.ts == record.ts } }
            #expect(landed.count >= files.count - 2, "\(landed) of \(files)")
            #expect(Set(after.map(\.ts)).count == after.count)
        }
    }

    @Test("two collectors and a repository restart: each lands its own servers' spool, nothing dropped, nothing doubled")
    func fleet() async throws {
        try await TestBed.withPrivate(
            name: "spool-fleet", port: 5415, remotes: 1, kind: PoWAMajor.four.bedKind,
            settings: ["POWA_TESTBED_LISTEN": "0.0.0.0"]
        ) { bed in
            let repository = try await ScratchRepository.create(on: bed)
            var servers: [Int] = []
            for host in 1...4 {
                servers.append(
                    try await repository.register(
                        port: bed.remotePorts[0], hostname: "127.0.0.\(host)", frequency: Int(Self.frequency)))
            }
            let remote = try await bed.connect(port: bed.remotePorts[0])
            defer { remote.close() }
            try await remote.execute(Self.marker)
            let directories = [Self.temporaryDirectory(), Self.temporaryDirectory()]
            let collectors = try directories.map { directory in
                var configuration = CollectorConfiguration(repositoryDSN: repository.dsn)
                configuration.connectTimeout = 3
                configuration.spool = SpoolSettings(directory: directory)
                return try DaemonProcess(DaemonProcess.collectorBinary, ["--config", try writeConfiguration(configuration)])
            }
            defer { collectors.forEach { $0.signal(SIGKILL) } }
            for server in servers { _ = try await repository.waitForSnapshots(server, count: 2) }
            #expect(collectors.allSatisfy { $0.output.contains("fleet: 2 member(s)") })

            try await bed.pgCtl(bed.repositoryDataDirectory, ["stop", "-m", "fast"])
            let spooled = try await eventually(timeout: .seconds(30)) {
                servers.allSatisfy { server in
                    directories.map { Self.spooledFiles($0, server: server).count }.reduce(0, +) >= 3
                }
            }
            #expect(spooled)
            try await bed.pgCtl(bed.repositoryDataDirectory, ["start"])
            let landed = try await eventually(timeout: .seconds(60)) {
                servers.allSatisfy { server in directories.allSatisfy { Self.spooledFiles($0, server: server).isEmpty } }
            }
            #expect(landed)
            for server in servers { _ = try await repository.waitForSnapshots(server, count: 1) }
            for collector in collectors {
                #expect(!collector.output.contains("spooled snapshots dropped"), "\(collector.output)")
            }
            for server in servers {
                let history = try await Self.markerHistory(repository, server: server)
                #expect(Set(history.map(\.ts)).count == history.count, "server \(server): \(history)")
                for (earlier, later) in zip(history, history.dropFirst()) {
                    #expect(later.ts - earlier.ts <= Self.frequency * 1.8, "server \(server): a gap in \(history)")
                }
            }
        }
    }

    @Test("a daemon with a spool stops on SIGTERM with exit 0, during start-up too, and a SIGHUP then does not kill it")
    func signals() async throws {
        var configuration = CollectorConfiguration(repositoryDSN: "host=127.0.0.1 port=1 dbname=powa user=postgres")
        configuration.connectTimeout = 1
        configuration.debug = true
        configuration.spool = SpoolSettings(directory: Self.temporaryDirectory())
        let daemon = try DaemonProcess(DaemonProcess.collectorBinary, ["--config", try writeConfiguration(configuration)])
        defer { daemon.signal(SIGKILL) }
        // Retrying (at debug level, each retry), the spool open: its file threads run.
        #expect(try await daemon.waitForOutput("cannot reach the repository", count: 2))
        daemon.signal(SIGHUP)
        #expect(try await daemon.waitForOutput("cannot reach the repository", count: 3))
        daemon.signal(SIGTERM)
        #expect(await daemon.wait(orKillAfter: .seconds(10)) == 0, "\(daemon.output)")
    }

    // MARK: Helpers

    static func temporaryDirectory() -> String {
        "/tmp/powa-spool-test-\(UInt64.random(in: 0...UInt64.max))"
    }

    /// The server's spooled snapshots, oldest first.
    static func spooledFiles(_ directory: String, server: Int) -> [String] {
        let path = "\(directory)/\(server)"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return names.filter { $0.hasSuffix(".snapshot") }.sorted().map { "\(path)/\($0)" }
    }

    static func size(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
    }

    /// The marker's history records, by remote `ts`.
    static func markerHistory(_ repository: ScratchRepository, server: Int) async throws -> [(ts: Double, calls: Int)] {
        let connection = try await repository.connect()
        defer { connection.close() }
        let rows = try await connection.query(
            """
            SELECT extract(epoch FROM (h.record).ts)::float8, (h.record).calls
            FROM powa_statements_history_current h
            JOIN powa_statements s USING (srvid, queryid, dbid, userid)
            WHERE h.srvid = $1 AND s.query LIKE '%spool_marker%'
            ORDER BY 1
            """, ["\(server)"]
        ).rows
        return try rows.map { (try $0.decode(0, as: Double.self), try $0.decode(1, as: Int.self)) }
    }
}
