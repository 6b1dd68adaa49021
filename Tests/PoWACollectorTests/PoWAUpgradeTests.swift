import Foundation
import Glibc
import PoWACollector
import TestBed
import TestWaiting
import Testing

/// powa-archivist upgraded with `ALTER EXTENSION powa UPDATE` under a running daemon, as the
/// README promises: no restart, no reload.
///
/// A private bed on 6120-6122, every cluster created at powa 5.1.2 (from the 5.3.0 copy, which
/// has every older script and the upgrade scripts).
@Suite("powa-archivist upgraded while the collector runs", .timeLimit(.minutes(4)))
struct PoWAUpgradeTests {
    static let kind = BedKind(major: .five, powa: "5.1.2")

    @Test("5.1.2 to 5.3.0: remotes first (refused with powa-web's words meanwhile), then the repository; snapshots resume")
    func upgradeWhileRunning() async throws {
        try await TestBed.withPrivate(name: "upgrade", port: 6120, remotes: 2, kind: Self.kind) { bed in
            try await upgradeWhileRunning(bed: bed)
        }
    }

    /// powa's version in the `powa` database of a cluster.
    static func powaVersion(_ bed: TestBed, port: Int) async throws -> String? {
        let connection = try await bed.connect(port: port)
        defer { connection.close() }
        return try await connection.query("SELECT extversion FROM pg_extension WHERE extname = 'powa'").rows.first?[0]
    }

    /// `ALTER EXTENSION powa UPDATE` (to the default version, 5.3.0) on a cluster.
    static func update(_ bed: TestBed, port: Int) async throws {
        let connection = try await bed.connect(port: port)
        defer { connection.close() }
        try await connection.execute("ALTER EXTENSION powa UPDATE")
    }

    private func upgradeWhileRunning(bed: TestBed) async throws {
        for port in [bed.repositoryPort] + bed.remotePorts {
            #expect(try await Self.powaVersion(bed, port: port) == "5.1.2", "port \(port)")
        }
        // The bed's own repository, where scripts/testbed registered remote1 and remote2 (ids 1
        // and 2, every 5 s).
        let repository = ScratchRepository(bed: bed, database: "powa")
        let servers = [1, 2]
        var configuration = CollectorConfiguration(repositoryDSN: repository.dsn)
        configuration.connectTimeout = 3
        let path = try writeConfiguration(configuration)
        defer { unlink(path) }
        let daemon = try DaemonProcess(DaemonProcess.collectorBinary, ["--config", path])
        var stopped = false
        defer { if !stopped { daemon.signal(SIGKILL) } }
        for server in servers { _ = try await repository.waitForSnapshots(server, count: 1) }
        for server in servers { #expect(try await repository.errors(server) == "") }

        // The remotes first: the repository is still 5.1, so every snapshot is refused, in the
        // words powa-web shows, until the repository catches up.
        for port in bed.remotePorts { try await Self.update(bed, port: port) }
        for port in bed.remotePorts { #expect(try await Self.powaVersion(bed, port: port) == "5.3.0") }
        let refusal = "Incompatible PoWA version between the repository server (5.1.2) and the remote host (5.3.0)"
        for server in servers {
            // (The next snapshot's: 5 s away, longer when the whole suite loads the machine.)
            let errors = try await repository.waitForErrors(server, containing: refusal, timeout: .seconds(60))
            #expect(errors == refusal, "server \(server)")
        }
        let refused = try await OperationsTests.command(["status", "--config", path])
        #expect(refused.output.contains("2 servers: 0 running"), "\(refused.output)")
        for (server, port) in zip(servers, bed.remotePorts) {
            #expect(
                OperationsTests.rows(refused.output).contains([
                    "\(server)", "remote\(server)", "(127.0.0.1:\(port))", "incompatible", "PoWA", "version",
                ]), "\(refused.output)")
        }

        // Then the repository, while the daemon keeps its sessions (idle, LISTENing) open.
        try await Self.update(bed, port: bed.repositoryPort)
        #expect(try await Self.powaVersion(bed, port: bed.repositoryPort) == "5.3.0")
        let upgraded = Date().timeIntervalSince1970
        // Snapshots land again, every source of them, with no error; the first one after the
        // upgrade may have begun before it (refused): wait for clean ones.
        for server in servers {
            var errors = ""
            let clean = try await eventually(timeout: .seconds(60)) {
                _ = try await repository.waitForSnapshots(server, count: 1)
                errors = try await repository.errors(server)
                let snapts = try await repository.snapts(server) ?? 0
                return errors == "" && snapts > upgraded
            }
            #expect(clean, "server \(server): \(errors)")
        }
        for server in servers {
            for table in [
                "powa_statements_history_current", "powa_stat_bgwriter_history_current",
                "powa_all_tables_history_current",
            ] {
                #expect(
                    try await repository.int(
                        "SELECT count(*) FROM \(table) WHERE srvid = $1 AND (record).ts > to_timestamp($2::float8)",
                        ["\(server)", "\(upgraded)"]) > 0, "\(table) for server \(server)")
            }
        }
        let status = try await OperationsTests.command(["status", "--config", path])
        #expect(status.code == 0 && status.output.contains("2 servers: 2 running"), "\(status.output)")

        // The same process all along: started once, never exited, and it stops cleanly.
        #expect(daemon.output.components(separatedBy: "starting").count == 2, "\(daemon.output)")
        daemon.signal(SIGTERM)
        #expect(await daemon.wait() == 0, "\(daemon.output)")
        stopped = true
    }
}
