import Foundation
import PoWACollector
import Testing

/// Which file is read, what the environment adds, and what an error may say: no network.
@Suite("Configuration from the environment", .timeLimit(.minutes(1)))
struct ConfigurationSourceTests {
    /// A scratch directory for files, removed at the end.
    final class Scratch {
        let directory = "/tmp/powa-source-\(UInt64.random(in: 0...UInt64.max))"
        init() { try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        deinit { try? FileManager.default.removeItem(atPath: directory) }

        /// Writes `text` to `name` in the scratch directory and returns its path.
        func file(_ name: String, _ text: String) -> String {
            let path = directory + "/" + name
            try? text.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
    }

    private func load(
        _ commandLine: String? = nil, _ environment: [String: String], searchPath: [String] = []
    ) throws(ConfigurationError) -> (CollectorConfiguration, origin: String) {
        try ConfigurationSource(commandLinePath: commandLine, environment: environment, searchPath: searchPath).load()
    }

    @Test("the file: --config, then POWA_COLLECTOR_CONFIG, then the first of the search path that exists")
    func filePrecedence() throws {
        let scratch = Scratch()
        let flag = scratch.file("flag.conf", #"{"repository": {"dsn": "dbname=flag"}}"#)
        let variable = scratch.file("variable.conf", #"{"repository": {"dsn": "dbname=variable"}}"#)
        let searched = scratch.file("searched.conf", #"{"repository": {"dsn": "dbname=searched"}}"#)
        let path = [scratch.directory + "/missing.conf", searched]
        let environment = ["POWA_COLLECTOR_CONFIG": variable]
        #expect(try load(flag, environment, searchPath: path).0.repositoryDSN == "dbname=flag")
        #expect(try load(nil, environment, searchPath: path).0.repositoryDSN == "dbname=variable")
        #expect(try load(nil, [:], searchPath: path).0.repositoryDSN == "dbname=searched")
        #expect(try load(nil, [:], searchPath: path).origin == searched)
    }

    @Test("the search path, from / as from a home: no doubled slash")
    func searchPathJoins() {
        #expect(
            ConfigurationFile.searchPath(home: "/", currentDirectory: "/") == [
                "/etc/powa-collector.conf", "/.config/powa-collector.conf", "/.powa-collector.conf",
                "/powa-collector.conf",
            ])
        #expect(
            ConfigurationFile.searchPath(home: "/var/lib/powa", currentDirectory: "/srv/")[1...] == [
                "/var/lib/powa/.config/powa-collector.conf", "/var/lib/powa/.powa-collector.conf",
                "/srv/powa-collector.conf",
            ])
    }

    @Test("a DSN from the environment wins over the file's; the file's other keys still apply")
    func dsnOverridesFile() throws {
        let scratch = Scratch()
        let file = scratch.file("c.conf", #"{"repository": {"dsn": "dbname=file"}, "debug": true}"#)
        let direct = try load(file, ["POWA_COLLECTOR_REPOSITORY_DSN": "dbname=direct"])
        #expect(direct.0.repositoryDSN == "dbname=direct" && direct.0.debug)
        #expect(direct.origin == file + ", repository.dsn from POWA_COLLECTOR_REPOSITORY_DSN")
        let secret = scratch.file("secret", "host=repo dbname=powa password=S3cret\n")
        let fromFile = try load(file, ["POWA_COLLECTOR_REPOSITORY_DSN_FILE": secret])
        #expect(fromFile.0.repositoryDSN == "host=repo dbname=powa password=S3cret")
        #expect(fromFile.0.debug)
        // With the DSN from the environment, the file may leave `repository` out.
        let noRepository = scratch.file("n.conf", #"{"use_server_alias": true}"#)
        let partial = try load(noRepository, ["POWA_COLLECTOR_REPOSITORY_DSN": "dbname=direct"])
        #expect(partial.0.repositoryDSN == "dbname=direct" && partial.0.useServerAlias)
        #expect(throws: ConfigurationError.self) { try load(noRepository, [:]) }
    }

    @Test("with a DSN from the environment no file is needed; without one, the error says how to give it")
    func noFile() throws {
        let scratch = Scratch()
        let missing = [scratch.directory + "/a.conf", scratch.directory + "/b.conf"]
        let alone = try load(nil, ["POWA_COLLECTOR_REPOSITORY_DSN": "dbname=alone"], searchPath: missing)
        #expect(alone.0 == CollectorConfiguration(repositoryDSN: "dbname=alone"))
        #expect(alone.origin == "no configuration file, repository.dsn from POWA_COLLECTOR_REPOSITORY_DSN")
        let error = #expect(throws: ConfigurationError.self) { try load(nil, [:], searchPath: missing) }
        #expect(error?.message.contains("POWA_COLLECTOR_REPOSITORY_DSN") == true)
        #expect(error?.message.contains(missing[1]) == true)
        // A file named explicitly must exist, DSN or not.
        #expect(throws: ConfigurationError.self) {
            try load(missing[0], ["POWA_COLLECTOR_REPOSITORY_DSN": "dbname=x"])
        }
    }

    @Test("the secret's file is read again at each load: a rotated DSN is picked up by a reload")
    func secretReread() throws {
        let scratch = Scratch()
        let secret = scratch.file("secret", "dbname=first\n")
        let source = ConfigurationSource(
            commandLinePath: nil, environment: ["POWA_COLLECTOR_REPOSITORY_DSN_FILE": secret], searchPath: [])
        #expect(try source.load().0.repositoryDSN == "dbname=first")
        _ = scratch.file("secret", "dbname=second")
        #expect(try source.load().0.repositoryDSN == "dbname=second")
    }

    @Test(
        "each mistake names its variable and never its value",
        arguments: [
            (["POWA_COLLECTOR_REPOSITORY_DSN": "S3cret", "POWA_COLLECTOR_REPOSITORY_DSN_FILE": "/S3cret"], "both"),
            (["POWA_COLLECTOR_REPOSITORY_DSN": " \n"], "POWA_COLLECTOR_REPOSITORY_DSN is set but empty"),
            (["POWA_COLLECTOR_REPOSITORY_DSN_FILE": ""], "POWA_COLLECTOR_REPOSITORY_DSN_FILE is set but empty"),
            (["POWA_COLLECTOR_REPOSITORY_DSN_FILE": "/tmp/S3cret-missing"], "cannot be read (No such file"),
            (["POWA_COLLECTOR_REPOSITORY_DSN_FILE": "/etc/S3cret-dir/"], "cannot be read"),
            (["POWA_COLLECTOR_REPOSITORY_DSN_FILE": "/dev/zero"], "is not a regular file"),
            (["POWA_COLLECTOR_REPOSITORY_DSN_FILE": "/tmp"], "is not a regular file"),
            (
                ["POWA_COLLECTOR_REPOSITORY_DSN": "host=db password=S3cret and more"],
                "POWA_COLLECTOR_REPOSITORY_DSN is not a valid connection string: libpq cannot parse it"
            ),
            (
                ["POWA_COLLECTOR_REPOSITORY_DSN": "postgresql://powa:p@S3cret:x@db:5432/powa"],
                "POWA_COLLECTOR_REPOSITORY_DSN is a URI with more than one '@' before its host: percent-encode"
            ),
            (["POWA_COLLECTOR_CONFIG": ""], "POWA_COLLECTOR_CONFIG is set but empty"),
            (
                ["POWA_COLLECTOR_CONFIG": "/tmp/S3cret-missing.conf"],
                "the file named by POWA_COLLECTOR_CONFIG: the configuration file does not exist"
            ),
            (
                ["POWA_COLLECTOR_CONFIG": "/tmp"],
                "the file named by POWA_COLLECTOR_CONFIG: the configuration file cannot be read (not a regular file)"
            ),
        ])
    func mistakes(environment: [String: String], message: String) {
        let error = #expect(throws: ConfigurationError.self) {
            try load(nil, environment, searchPath: ["/nonexistent/powa-collector.conf"])
        }
        #expect(error?.message.contains(message) == true, "\(error?.message ?? "")")
        #expect(error?.message.contains("S3cret") == false, "\(error?.message ?? "")")
    }

    @Test("a secret's file that is empty or not text is refused; its content never appears in an error")
    func badSecretFiles() {
        let scratch = Scratch()
        for (content, message) in [(Data("\n \n".utf8), "is empty"), (Data([0x53, 0x33, 0xff, 0xfe]), "not UTF-8")] {
            let path = scratch.directory + "/secret"
            #expect(FileManager.default.createFile(atPath: path, contents: content))
            let error = #expect(throws: ConfigurationError.self) {
                try load(nil, ["POWA_COLLECTOR_REPOSITORY_DSN_FILE": path])
            }
            #expect(error?.message.contains(message) == true, "\(error?.message ?? "")")
        }
        // Larger than any DSN.
        let large = scratch.file("large", String(repeating: "x", count: 70_000))
        let tooLarge = #expect(throws: ConfigurationError.self) {
            try load(nil, ["POWA_COLLECTOR_REPOSITORY_DSN_FILE": large])
        }
        #expect(tooLarge?.message.contains("larger than 64 KiB") == true)
        // A FIFO: refused at once, never waited on.
        let fifo = scratch.directory + "/fifo"
        #expect(mkfifo(fifo, 0o600) == 0)
        let blocked = #expect(throws: ConfigurationError.self) {
            try load(nil, ["POWA_COLLECTOR_REPOSITORY_DSN_FILE": fifo])
        }
        #expect(blocked?.message.contains("is not a regular file") == true)
        // The file's own DSN is checked as well, and never quoted.
        let unparsable = scratch.file("u.conf", #"{"repository": {"dsn": "host=db password=S3cret x"}}"#)
        let quoted = #expect(throws: ConfigurationError.self) { try load(unparsable, [:]) }
        #expect(quoted?.message.hasPrefix(unparsable + ": repository.dsn is not a valid connection string") == true)
        #expect(quoted?.message.contains("S3cret") == false)
        // A file named by POWA_COLLECTOR_CONFIG with a mistake: the mistake, not the path.
        let wrong = scratch.file("S3cret.conf", #"{"repository": {"dsn": 1}}"#)
        let error = #expect(throws: ConfigurationError.self) { try load(nil, ["POWA_COLLECTOR_CONFIG": wrong]) }
        #expect(error?.message == "the file named by POWA_COLLECTOR_CONFIG: \"repository.dsn\" must be a string, not 1")
    }
}
