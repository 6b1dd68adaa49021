import Foundation
import PoWACollector
import PostgresClient
import TestBed
import TestWaiting
import Testing

/// What an operator runs the daemon with: systemd, JSON logs, and the commands that talk to a
/// running collector.
@Suite("Operations", .timeLimit(.minutes(3)))
struct OperationsTests {
    /// A scratch repository with one server at frequency 5, and its configuration file.
    static func setUp(_ configure: (inout CollectorConfiguration) -> Void = { _ in }) async throws -> (
        repository: ScratchRepository, server: Int, configurationPath: String
    ) {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(port: bed.remotePorts[0], frequency: 5)
        var configuration = CollectorConfiguration(repositoryDSN: repository.dsn)
        configuration.connectTimeout = 3
        configure(&configuration)
        return (repository, server, try writeConfiguration(configuration))
    }

    /// The words of each line of a table.
    static func rows(_ output: String) -> [[String]] {
        output.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
    }

    /// Runs `powa-collector` with `arguments` to its end: exit code and output.
    static func command(_ arguments: [String]) async throws -> (code: Int32, output: String) {
        let process = try DaemonProcess(DaemonProcess.collectorBinary, arguments)
        let code = await process.wait()
        return (code, process.output)
    }

    @Test(
        "systemd: READY once the workers run, RELOADING then READY around a reload, WATCHDOG at half WatchdogSec, STOPPING last")
    func systemdNotifications() async throws {
        let (_, _, path) = try await Self.setUp()
        let socket = try NotifySocket()
        defer { socket.close() }
        let daemon = try DaemonProcess(
            DaemonProcess.collectorBinary, ["--config", path],
            environment: ["NOTIFY_SOCKET": socket.path, "WATCHDOG_USEC": "1000000"])
        #expect(try await eventually { socket.messages.contains { $0.hasPrefix("READY=1\nSTATUS=1 server") } })
        #expect(try await eventually { socket.messages.contains("STATUS=1 server: 1 running") })

        // Every 0.5 s: half of WATCHDOG_USEC.
        #expect(try await eventually { socket.arrivals(of: "WATCHDOG=1").count >= 4 })
        let beats = socket.arrivals(of: "WATCHDOG=1")
        for (earlier, later) in zip(beats, beats.dropFirst()) {
            #expect(later - earlier > .milliseconds(300) && later - earlier < .milliseconds(900), "\(later - earlier)")
        }

        daemon.signal(SIGHUP)
        #expect(try await eventually { socket.messages.contains { $0.hasPrefix("RELOADING=1\nMONOTONIC_USEC=") } })
        // The reload's end (a SIGTERM during it would rightly leave READY unsaid).
        #expect(try await eventually { socket.messages.filter { $0.hasPrefix("READY=1") }.count == 2 })
        daemon.signal(SIGTERM)
        #expect(await daemon.wait() == 0)
        // (Sent before the exit, read by the socket's thread: maybe not yet.)
        #expect(try await eventually(timeout: .seconds(5)) { socket.messages.contains { $0.hasPrefix("STOPPING=1") } })
        let events = socket.messages.filter { !$0.hasPrefix("WATCHDOG=1") && !$0.hasPrefix("STATUS=") }
            .map { $0.split(separator: "\n")[0] }
        #expect(events == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"], "\(socket.messages)")
        let usec = try #require(socket.messages.first { $0.hasPrefix("RELOADING=1") }?.split(separator: "=").last)
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let monotonic = UInt64(now.tv_sec) * 1_000_000
        #expect(UInt64(usec).map { $0 <= monotonic + 1_000_000 && $0 + 60_000_000 > monotonic } == true)
    }

    @Test("the shipped unit file passes systemd-analyze verify")
    func unitFile() async throws {
        let unit = TestBed.packageRoot.appendingPathComponent("contrib/systemd/powa-collector.service").path
        let text = try String(contentsOfFile: unit, encoding: .utf8)
        #expect(text.contains("Type=notify") && text.contains("WatchdogSec=") && text.contains("ExecReload="))
        // (ExecStart must name a binary that exists: the one just built.)
        let copy = "/tmp/powa-collector-\(UInt32.random(in: 0...UInt32.max)).service"
        try text.replacingOccurrences(of: "/usr/bin/powa-collector", with: DaemonProcess.collectorBinary)
            .write(toFile: copy, atomically: true, encoding: .utf8)
        defer { unlink(copy) }
        let verify = try DaemonProcess("/usr/bin/systemd-analyze", ["verify", copy])
        #expect(await verify.wait() == 0)
        #expect(verify.output.trimmingCharacters(in: .whitespacesAndNewlines) == "", "\(verify.output)")
    }

    @Test("--log-format json: every line one JSON object with time, level and message; fields of their own")
    func jsonLogs() async throws {
        let (repository, server, path) = try await Self.setUp { $0.debug = true }
        let daemon = try DaemonProcess(DaemonProcess.collectorBinary, ["--config", path, "--log-format", "json"])
        _ = try await repository.waitForSnapshots(server, count: 1)
        #expect(try await daemon.waitForOutput("snapshot taken"))
        daemon.signal(SIGTERM)
        #expect(await daemon.wait() == 0)
        let lines = daemon.output.split(separator: "\n", omittingEmptySubsequences: true)
        #expect(lines.count > 5)
        var objects: [[String: Any]] = []
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["time"] is String && object?["level"] is String && object?["message"] is String, "\(line)")
            if let object { objects.append(object) }
        }
        let snapshot = try #require(objects.first { $0["message"] as? String == "snapshot taken" })
        #expect(snapshot["worker"] as? String == "127.0.0.1:\(try await TestBed.shared().remotePorts[0])")
        #expect(snapshot["level"] as? String == "debug")
        #expect(Double(snapshot["seconds"] as? String ?? "") != nil)
    }

    @Test("status and reload ask the running collector through the repository; exit codes say what happened")
    func statusAndReload() async throws {
        let (repository, server, path) = try await Self.setUp()
        let bed = repository.bed
        // No collector yet: no answer, exit 1, within the timeout.
        let started = ContinuousClock.now
        let silent = try await Self.command(["status", "--config", path, "--timeout", "1"])
        #expect(silent.code == 1)
        #expect(silent.output.contains("no collector answered within 1.0 s"), "\(silent.output)")
        #expect(ContinuousClock.now - started < .seconds(5))

        let daemon = try DaemonProcess(DaemonProcess.collectorBinary, ["--config", path])
        _ = try await repository.waitForSnapshots(server, count: 1)
        let status = try await Self.command(["status", "--config", path])
        #expect(status.code == 0, "\(status.output)")
        #expect(status.output.contains("srvid"))
        #expect(
            Self.rows(status.output).contains(["\(server)", "127.0.0.1:\(bed.remotePorts[0])", "running"]), "\(status.output)")
        #expect(status.output.contains("1 server: 1 running"))

        // A server that cannot be reached, added and reloaded: status says so, exit 2.
        let down = try await repository.register(port: try LoopbackListener.freePort(), alias: "down", frequency: 5)
        let reload = try await Self.command(["reload", "--config", path])
        #expect(reload.code == 0 && reload.output.contains("reloaded"), "\(reload.output)")
        var last = (code: Int32(0), output: "")
        let reported = try await eventually {
            last = try await Self.command(["status", "--config", path])
            return last.output.contains("no connection to remote server")
        }
        #expect(reported, "\(last.output)")
        #expect(last.code == 2)
        #expect(
            Self.rows(last.output).contains {
                $0.starts(with: ["\(down)", "down"]) && $0.joined(separator: " ").hasSuffix("no connection to remote server")
            }, "\(last.output)")

        // A configuration file the daemon rejects (the running one kept): reload says so, exit 1.
        let valid = path + ".valid"
        try FileManager.default.copyItem(atPath: path, toPath: valid)
        try "{\"repository\": ".write(toFile: path, atomically: true, encoding: .utf8)
        let rejected = try await Self.command(["reload", "--config", valid])
        #expect(rejected.code == 1, "\(rejected.output)")
        #expect(rejected.output.contains("configuration file rejected, the running one kept"), "\(rejected.output)")

        daemon.signal(SIGTERM)
        #expect(await daemon.wait() == 0)
    }

    @Test("check: one good server, one without powa, one with a wrong password; its table, hints and exit codes")
    func check() async throws {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        let good = try await repository.register(port: bed.remotePorts[0], alias: "good")
        let database = "nopowa_\(UInt32.random(in: 0...UInt32.max))"
        let admin = try await bed.connect(port: bed.remotePorts[1], database: "postgres")
        try await admin.execute("CREATE DATABASE \(database)")
        admin.close()
        let missing = try await repository.register(port: bed.remotePorts[1], hostname: "localhost", dbname: database)
        let wrong = try await repository.register(
            port: bed.remotePorts[1], username: "powa_scram", password: "not-the-password")
        var configuration = CollectorConfiguration(repositoryDSN: repository.dsn)
        configuration.connectTimeout = 3
        let path = try writeConfiguration(configuration)

        let all = try await Self.command(["check", "--config", path])
        #expect(all.code == 1, "\(all.output)")
        let rows = Self.rows(all.output)
        #expect(rows.first?.starts(with: ["repository", "✓", "powa"]) == true, "\(all.output)")
        let goodRow = try #require(rows.first { $0.first == "\(good)" }, "\(all.output)")
        #expect(goodRow.filter { $0 == "✓" }.count == 4 && goodRow.contains("PostgreSQL") && !goodRow.contains("✗"), "\(goodRow)")
        let missingRow = try #require(rows.first { $0.first == "\(missing)" })
        #expect(missingRow.starts(with: ["\(missing)", "localhost:\(bed.remotePorts[1])", "✓"]) && missingRow.contains("✗"))
        #expect(all.output.contains("✗ \(missing) localhost:\(bed.remotePorts[1]) powa: the powa extension is not installed"))
        #expect(all.output.contains("hint: CREATE EXTENSION powa CASCADE in database \(database)"))
        #expect(all.output.contains("✗ \(wrong) 127.0.0.1:\(bed.remotePorts[1]) connection: "))
        #expect(all.output.contains("password authentication failed"))
        #expect(all.output.contains("hint: check the password"))
        #expect(!all.output.contains("not-the-password"))
        #expect(all.output.contains("3 servers: 1 usable"))

        let one = try await Self.command(["check", "--config", path, "--server", "good", "--json"])
        #expect(one.code == 0, "\(one.output)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(one.output.utf8)) as? [String: Any])
        #expect(object["usable"] as? Bool == true)
        let servers = try #require(object["servers"] as? [[String: Any]])
        #expect(servers.count == 1 && servers[0]["srvid"] as? Int == good)
        let checks = (servers[0]["checks"] as? [[String: Any]] ?? []).compactMap { $0["check"] as? String }
        #expect(Set(checks).isSuperset(of: ["connection", "privileges", "powa", "sources"]), "\(checks)")

        let nobody = try await Self.command(["check", "--config", path, "--server", "nobody"])
        #expect(nobody.code == 1 && nobody.output.contains("no active server matches nobody"))
        // Nothing changed: no snapshot, no error recorded.
        for server in [good, missing, wrong] {
            #expect(try await repository.snapts(server) == nil)
            #expect(try await repository.errors(server) == "")
        }
    }

    @Test("once: one snapshot of each server as the daemon takes it, one line each, exit 1 when one failed")
    func once() async throws {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        let good = try await repository.register(port: bed.remotePorts[0], alias: "good")
        let down = try await repository.register(port: try LoopbackListener.freePort(), alias: "down")
        var configuration = CollectorConfiguration(repositoryDSN: repository.dsn)
        configuration.connectTimeout = 3
        let path = try writeConfiguration(configuration)

        let both = try await Self.command(["once", "--config", path])
        #expect(both.code == 1, "\(both.output)")
        let lines = both.output.split(separator: "\n").map(String.init)
        #expect(
            lines.contains { $0.hasPrefix("✓ \(good) 127.0.0.1:\(bed.remotePorts[0]): snapshot taken in ") }, "\(both.output)")
        #expect(lines.contains { $0.hasPrefix("✗ \(down) 127.0.0.1:") && $0.contains("could not connect to the remote server") })
        let first = try #require(try await repository.snapts(good))
        #expect(try await repository.snapts(down) == nil)
        #expect(try await repository.errors(down).contains("could not connect"))
        #expect(try await repository.int("SELECT count(*) FROM powa_statements WHERE srvid = $1", ["\(good)"]) > 0)

        let one = try await Self.command(["once", "--config", path, "--server", "good"])
        #expect(one.code == 0, "\(one.output)")
        #expect(one.output.split(separator: "\n").count == 1, "\(one.output)")
        #expect(try #require(try await repository.snapts(good)) > first)

        // An active server whose row cannot be used is not snapshotted: a failure, named.
        let unusable = try await repository.register(port: bed.remotePorts[1], alias: "unusable")
        try await repository.execute("UPDATE powa_servers SET username = '' WHERE id = \(unusable)")
        let named = try await Self.command(["once", "--config", path, "--server", "unusable"])
        #expect(named.code == 1, "\(named.output)")
        #expect(
            named.output.contains("✗ \(unusable) unusable: its powa_servers row cannot be used (empty username)"),
            "\(named.output)")
        // Nothing of the command is left on the servers.
        #expect(
            try await backendPIDs(bed: bed, port: bed.remotePorts[0], applicationName: "PoWA collector - worker good").isEmpty)
    }

    @Test("status with more servers than one answer can hold (8000 bytes): asked server by server")
    func statusOfManyServers() async throws {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        let port = try LoopbackListener.freePort()
        // 210 servers nobody listens for: 210 "no connection to remote server" statuses.
        try await repository.execute(
            """
            SELECT powa_register_server(hostname => '127.0.1.' || i, port => \(port), username => 'postgres',
                dbname => 'powa', frequency => 300)
            FROM generate_series(1, 210) i
            """)
        var configuration = CollectorConfiguration(repositoryDSN: repository.dsn)
        configuration.connectTimeout = 3
        configuration.maxConcurrentSnapshots = 2
        let path = try writeConfiguration(configuration)
        let daemon = try DaemonProcess(DaemonProcess.collectorBinary, ["--config", path])
        let client = try await ControlClient.connect(repository)
        let whole = try await client.waitForStatus { $0.contains("no connection") || $0.contains(" KO ") }
        client.close()
        #expect(whole == "WORKERS_STATUS KO answer too long")
        var last = (code: Int32(0), output: "")
        let listed = try await eventually {
            last = try await Self.command(["status", "--config", path])
            return last.output.contains("210 servers: 0 running")
        }
        #expect(listed, "\(last.output.suffix(300))")
        #expect(last.code == 2)
        #expect(Self.rows(last.output).filter { $0.last == "server" }.count == 210)
        daemon.signal(SIGTERM)
        #expect(await daemon.wait() == 0)
    }
}
