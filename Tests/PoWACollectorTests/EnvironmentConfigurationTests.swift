import Foundation
import PoWACollector
import TestBed
import Testing

/// The configuration of a container: the repository's DSN from the environment or a mounted
/// secret, as the built binary reads it.
@Suite("Configuration from the environment, in the daemon", .timeLimit(.minutes(3)))
struct EnvironmentConfigurationTests {
    /// A file holding `text`, in a directory of its own; removed by the caller.
    private static func secret(_ text: String) throws -> (directory: String, path: String) {
        let directory = "/tmp/powa-secret-\(UInt64.random(in: 0...UInt64.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/dsn"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return (directory, path)
    }

    @Test("check with the DSN from POWA_COLLECTOR_REPOSITORY_DSN_FILE and a file named by POWA_COLLECTOR_CONFIG")
    func checkFromEnvironment() async throws {
        let (repository, _, _) = try await OperationsTests.setUp()
        let secret = try Self.secret(repository.dsn + "\n")
        defer { try? FileManager.default.removeItem(atPath: secret.directory) }
        let file = secret.directory + "/collector.conf"
        try #"{"connect_timeout": 3, "use_server_alias": true}"#.write(toFile: file, atomically: true, encoding: .utf8)
        let check = try DaemonProcess(
            DaemonProcess.collectorBinary, ["check"],
            environment: ["POWA_COLLECTOR_CONFIG": file, "POWA_COLLECTOR_REPOSITORY_DSN_FILE": secret.path])
        #expect(await check.wait() == 0, "\(check.output)")
        #expect(check.output.contains("1 server: 1 usable"), "\(check.output)")
        // --config wins over POWA_COLLECTOR_CONFIG: a file that does not exist is an error.
        let flag = try DaemonProcess(
            DaemonProcess.collectorBinary, ["check", "--config", secret.directory + "/missing.conf"],
            environment: ["POWA_COLLECTOR_CONFIG": file, "POWA_COLLECTOR_REPOSITORY_DSN_FILE": secret.path])
        #expect(await flag.wait() == 1)
        #expect(flag.output.contains("missing.conf: the configuration file does not exist"), "\(flag.output)")
    }

    @Test(
        "a mistake in the environment: exit 1, one line naming the variable, never its value",
        arguments: [
            ["POWA_COLLECTOR_REPOSITORY_DSN_FILE": "/tmp/S3cret-dsn-missing"],
            ["POWA_COLLECTOR_REPOSITORY_DSN": "host=db password=S3cret", "POWA_COLLECTOR_REPOSITORY_DSN_FILE": "/S3cret"],
            ["POWA_COLLECTOR_CONFIG": "/tmp/S3cret-missing.conf"],
        ])
    func mistakes(environment: [String: String]) async throws {
        for arguments in [["check"], ["run"]] {
            let process = try DaemonProcess(DaemonProcess.collectorBinary, arguments, environment: environment)
            #expect(await process.wait() == 1)
            let lines = process.output.split(separator: "\n")
            #expect(lines.count == 1, "\(process.output)")
            #expect(lines.first?.contains("POWA_COLLECTOR_") == true, "\(process.output)")
            #expect(!process.output.contains("S3cret"), "\(process.output)")
        }
    }

    @Test("a reload reads the secret's file again: a missing one keeps the running configuration, a fixed one is taken")
    func reloadRereadsSecret() async throws {
        let (repository, server, _) = try await OperationsTests.setUp()
        let secret = try Self.secret(repository.dsn)
        defer { try? FileManager.default.removeItem(atPath: secret.directory) }
        let file = secret.directory + "/collector.conf"
        try #"{"connect_timeout": 3}"#.write(toFile: file, atomically: true, encoding: .utf8)
        let daemon = try DaemonProcess(
            DaemonProcess.collectorBinary, ["--config", file],
            environment: ["POWA_COLLECTOR_REPOSITORY_DSN_FILE": secret.path])
        defer { daemon.signal(SIGKILL) }
        _ = try await repository.waitForSnapshots(server, count: 1)
        // The first line says where the configuration came from.
        let origin = "file=\(file), repository.dsn from POWA_COLLECTOR_REPOSITORY_DSN_FILE"
        let starting = daemon.output.split(separator: "\n").first { $0.contains("\(Collector.version) starting") }
        #expect(starting?.contains(origin) == true, "\(daemon.output)")

        try FileManager.default.removeItem(atPath: secret.path)
        daemon.signal(SIGHUP)
        #expect(
            try await daemon.waitForOutput(
                "configuration not reloaded, keeping the current one: the file named by POWA_COLLECTOR_REPOSITORY_DSN_FILE cannot be read (No such file"
            ), "\(daemon.output)")
        #expect(!daemon.output.contains(secret.path))
        // Still snapshotting with the configuration it had.
        _ = try await repository.waitForSnapshots(server, count: 1)

        try repository.dsn.write(toFile: secret.path, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        #expect(try await daemon.waitForOutput("configuration reloaded"), "\(daemon.output)")
        let reloaded = daemon.output.split(separator: "\n").first { $0.contains("configuration reloaded") }
        #expect(reloaded?.contains(origin) == true, "\(daemon.output)")
        daemon.signal(SIGTERM)
        #expect(await daemon.wait() == 0)
    }
}
