import Foundation
import PoWACollector
import TestBed
import Testing

@Suite("The powa-collector command", .timeLimit(.minutes(4)))
struct CommandTests {
    /// Runs the collector binary to its end and returns its exit code and output.
    private func run(_ arguments: [String], directory: String = "/tmp", home: String = "/nonexistent") async throws -> (
        Int32, String
    ) {
        let process = try DaemonProcess(
            DaemonProcess.collectorBinary, arguments, environment: ["HOME": home], directory: directory)
        let code = await process.wait()
        return (code, process.output)
    }

    private func writeTemporary(_ text: String) throws -> String {
        let path = "/tmp/powa-config-\(UInt32.random(in: 0...UInt32.max)).conf"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("--version and --help")
    func versionAndHelp() async throws {
        let (code, output) = try await run(["--version"])
        #expect(code == 0)
        #expect(output.contains(Collector.version))
        let (helpCode, help) = try await run(["--help"])
        #expect(helpCode == 0)
        #expect(help.contains("powa-collector [--config PATH]"))
        for command in ["check", "once", "status", "reload"] { #expect(help.contains(command)) }
        let (runCode, runHelp) = try await run(["run", "--help"])
        #expect(runCode == 0 && runHelp.contains("--config") && runHelp.contains("SIGHUP"))
    }

    @Test("configuration errors exit 1 with one actionable line")
    func configurationErrors() async throws {
        let missing = try await run(["--config", "/tmp/no-such-powa.conf"])
        #expect(missing.0 == 1)
        #expect(missing.1.contains("/tmp/no-such-powa.conf: the configuration file does not exist"))

        let emptyDirectory = "/tmp/powa-empty-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: emptyDirectory, withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: "/etc/powa-collector.conf") {
            let none = try await run([], directory: emptyDirectory)
            #expect(none.0 == 1)
            #expect(none.1.contains("no configuration file found"))
        }

        let cases = [
            ("{\"repository\": {\"dsn\": \"x\"}, \"debug\": tru}", "invalid JSON"),
            ("{\"debug\": true}", "missing \"repository\""),
            ("{\"repository\": {\"dsn\": true}}", "\"repository.dsn\" must be a string"),
            ("{\"repository\": {\"dsn\": \"x\"}, \"debug\": \"no\"}", "\"debug\" must be true or false"),
        ]
        for (text, message) in cases {
            let path = try writeTemporary(text)
            let (code, output) = try await run(["--config", path])
            #expect(code == 1, "\(text)")
            #expect(output.contains(path) && output.contains(message), "\(output)")
            #expect(output.split(separator: "\n").count == 1, "\(output)")
        }
        // ./powa-collector.conf is found by the search path.
        try "{}".write(toFile: emptyDirectory + "/powa-collector.conf", atomically: true, encoding: .utf8)
        if !FileManager.default.fileExists(atPath: "/etc/powa-collector.conf") {
            let local = try await run([], directory: emptyDirectory)
            #expect(local.0 == 1)
            #expect(local.1.contains(emptyDirectory + "/powa-collector.conf: missing \"repository\""))
        }
    }

    @Test("a malformed repository DSN exits 1 without showing its password")
    func malformedDSN() async throws {
        let secret = "dsn-Secr3t-malformed"
        let path = try writeTemporary("{\"repository\": {\"dsn\": \"host=127.0.0.1 password=\(secret) nonsense=1\"}}")
        let (code, output) = try await run(["--config", path])
        #expect(code == 1)
        #expect(output.contains("nonsense"))
        #expect(!output.contains(secret))
    }

    @Test("passwords from the DSN and from powa_servers never show up, even with debug", arguments: PoWAMajor.allCases)
    func passwordsNeverLogged(major: PoWAMajor) async throws {
        let bed = try await TestBed.shared(major)
        let repository = try await ScratchRepository.create(on: bed)
        let serverSecret = "srv-Secr3t-in-powa-servers"
        // A server whose stored password is wrong: its failures are logged at every level.
        let server = try await repository.register(
            port: bed.remotePorts[0], username: "powa_scram", password: serverSecret)
        let dsn = "postgresql://powa_scram:\(TestBed.scramPassword)@127.0.0.1:\(bed.repositoryPort)/\(repository.database)"
        let path = try writeTemporary("{\"repository\": {\"dsn\": \"\(dsn)\"}, \"debug\": true}")
        let daemon = try DaemonProcess(DaemonProcess.collectorBinary, ["--config", path])
        #expect(try await daemon.waitForOutput("password authentication failed"))
        #expect(
            try await repository.waitForErrors(server, containing: "password authentication failed").contains(
                "password authentication failed"))
        daemon.signal(SIGTERM)
        #expect(await daemon.wait() == 0)
        let output = daemon.output
        #expect(output.contains("debug"))
        #expect(!output.contains(serverSecret))
        #expect(!output.contains(TestBed.scramPassword))
        #expect(try await !repository.errors(server).contains(serverSecret))
    }
}
