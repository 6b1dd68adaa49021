import Foundation
import PoWACollector
import PostgresClient
import TestBed
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
        // The window in which attempts are counted (the backoff doubles from 1 s).
        try await Task.sleep(for: .seconds(3))
        #expect(attempts() - before <= 4, "\(attempts() - before) connection attempts in 3 s")
        try await running.stop()
    }

    @Test("a remote whose powa is installed after start: snapshots begin at the next period, no reload")
    func powaInstalledLater() async throws {
        let bed = try await TestBed.shared()
        let database = "late_powa_\(UInt32.random(in: 0...UInt32.max))"
        try await PoWA5Tests.onRemote(bed, "CREATE DATABASE \(database)", database: "postgres")
        defer { Task { try? await PoWA5Tests.onRemote(bed, "DROP DATABASE IF EXISTS \(database)", database: "postgres") } }
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
    @Test(
        "while the repository cannot be reached: SIGHUP does not kill the daemon, SIGTERM and SIGINT stop it at once",
        arguments: [SIGTERM, SIGINT])
    func signalsDuringStartup(stop: Int32) async throws {
        var configuration = CollectorConfiguration(
            repositoryDSN: "host=127.0.0.1 port=\(try LoopbackListener.freePort()) dbname=powa user=postgres")
        configuration.connectTimeout = 2
        let daemon = try DaemonProcess(DaemonProcess.collectorBinary, ["--config", try writeConfiguration(configuration)])
        #expect(try await daemon.waitForOutput("cannot reach the repository"))
        daemon.signal(SIGHUP)
        // Still there after SIGHUP: it answers the next signal, and not as killed by SIGHUP.
        #expect(try await daemon.waitForOutput("cannot reach the repository", count: 2))
        let sent = ContinuousClock.now
        daemon.signal(stop)
        let code = await daemon.wait()
        #expect(code == 0, "\(daemon.output)")
        #expect(ContinuousClock.now - sent < .seconds(2))
    }
}
