import Foundation
import PoWACollector
import PostgresClient
import TestBed
import TestWaiting
import Testing

/// The HTTP endpoint (`http.listen`): metrics, liveness and readiness, scraped over HTTP from
/// the daemon while it works and while a remote is down.
@Suite("HTTP endpoint", .timeLimit(.minutes(3)))
struct HTTPEndpointTests {
    /// The value of the first sample whose line starts with `prefix` (name and labels).
    static func sample(_ metrics: String, _ prefix: String) -> Double? {
        metrics.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { $0.split(separator: " ").last }
            .flatMap { Double($0) }
    }

    @Test("metrics while snapshots run and after the remote goes down; readiness follows; a removed server's series go")
    func metricsAndHealth() async throws {
        try await TestBed.withPrivate(name: "http", port: 5485, remotes: 1) { bed in
            let repository = try await ScratchRepository.create(on: bed)
            let server = try await repository.register(port: bed.remotePorts[0], alias: "orders", frequency: 5)
            let port = try LoopbackListener.freePort()
            var configuration = CollectorConfiguration(repositoryDSN: repository.dsn)
            configuration.connectTimeout = 2
            configuration.httpListen = HTTPAddress("127.0.0.1:\(port)")
            let path = try writeConfiguration(configuration)
            let daemon = try DaemonProcess(DaemonProcess.collectorBinary, ["--config", path])
            defer { daemon.signal(SIGKILL) }
            let base = "http://127.0.0.1:\(port)"

            #expect(try await eventually { (try? await httpGet("\(base)/readyz"))?.status == 200 })
            #expect(try await httpGet("\(base)/livez").status == 200)
            _ = try await repository.waitForSnapshots(server, count: 2)
            let labels = "server=\"orders\",srvid=\"\(server)\""
            var metrics = try await httpGet("\(base)/metrics").body
            #expect(Self.sample(metrics, "powa_collector_snapshots_total{\(labels),outcome=\"success\"}") ?? 0 >= 2, "\(metrics)")
            #expect(Self.sample(metrics, "powa_collector_worker_status{\(labels),status=\"running\"}") == 1)
            #expect(Self.sample(metrics, "powa_collector_rows_copied_total{\(labels),source=\"powa_statements_src\"}") ?? 0 > 0)
            #expect(Self.sample(metrics, "powa_collector_bytes_copied_total{\(labels),source=\"powa_statements_src\"}") ?? 0 > 0)
            #expect(
                Self.sample(metrics, "powa_collector_last_success_timestamp_seconds{\(labels)}") ?? 0 > Date()
                    .timeIntervalSince1970 - 60)
            #expect(Self.sample(metrics, "powa_collector_repository_up") == 1)
            #expect(Self.sample(metrics, "powa_collector_info{version=\"\(Collector.version)\"}") == 1)
            // Alone on its repository: a fleet of one, which it leads, owning the one server.
            #expect(Self.sample(metrics, "powa_collector_fleet_members") == 1)
            #expect(Self.sample(metrics, "powa_collector_fleet_leader") == 1)
            #expect(Self.sample(metrics, "powa_collector_fleet_owned_servers") == 1)
            #expect(Self.sample(metrics, "powa_collector_fleet_member_id") ?? 0 > 0)
            #expect(Self.sample(metrics, "powa_collector_snapshot_duration_seconds_count") ?? 0 >= 2)
            #expect(Self.sample(metrics, "powa_collector_last_snapshot_duration_seconds{\(labels)}") ?? 0 > 0)
            #expect(Self.sample(metrics, "powa_collector_repository_take_snapshot_duration_seconds_count") ?? 0 >= 2)
            // Bounded labels: no SQL, no error text.
            #expect(!metrics.contains("SELECT") && !metrics.contains("failed:"))

            // The remote goes down: not ready, and said why; the status gauge follows.
            try await bed.pgCtl(bed.remoteDataDirectories[0], ["stop", "-m", "fast"])
            var readiness = (status: 0, body: "")
            #expect(
                try await eventually {
                    readiness = try await httpGet("\(base)/readyz")
                    return readiness.status == 503
                })
            #expect(
                readiness.body.contains("\"not_running\": {\"\(server)\": \"no connection to remote server\"}"),
                "\(readiness.body)")
            metrics = try await httpGet("\(base)/metrics").body
            #expect(
                Self.sample(metrics, "powa_collector_worker_status{\(labels),status=\"no connection to remote server\"}") == 1)
            #expect(try await httpGet("\(base)/livez").status == 200)

            try await bed.pgCtl(bed.remoteDataDirectories[0], ["start"])
            #expect(try await eventually(timeout: .seconds(45)) { (try? await httpGet("\(base)/readyz"))?.status == 200 })

            // Removed from powa_servers: its series are gone after the reload.
            try await repository.execute("SELECT powa_deactivate_server(\(server))")
            let client = try await ControlClient.connect(repository)
            #expect(try await client.ask("RELOAD r1", channel: "r1") == "RELOAD OK OK")
            client.close()
            metrics = try await httpGet("\(base)/metrics").body
            #expect(!metrics.contains("srvid=\"\(server)\""), "\(metrics)")
            #expect(Self.sample(metrics, "powa_collector_reloads_total{outcome=\"success\"}") == 1)
            #expect(Self.sample(metrics, "powa_collector_control_requests_total{command=\"RELOAD\",status=\"OK\"}") == 1)

            daemon.signal(SIGTERM)
            #expect(await daemon.wait(orKillAfter: .seconds(10)) == 0)
        }
    }

    @Test("no http.listen: no port is opened; a taken port stops the daemon with exit 1")
    func offAndTaken() async throws {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        let taken = try LoopbackListener()
        defer { taken.close() }
        var configuration = CollectorConfiguration(repositoryDSN: repository.dsn)
        configuration.httpListen = HTTPAddress("127.0.0.1:\(taken.port)")
        let daemon = try DaemonProcess(DaemonProcess.collectorBinary, ["--config", try writeConfiguration(configuration)])
        #expect(await daemon.wait(orKillAfter: .seconds(20)) == 1, "\(daemon.output)")
        #expect(
            daemon.output.contains("Address already in use") || daemon.output.contains("address already in use"),
            "\(daemon.output)")
    }
}
