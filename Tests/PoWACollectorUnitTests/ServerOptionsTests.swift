import Foundation
import PoWACollector
import Testing

/// `servers` in the configuration: extra libpq keywords per remote server.
@Suite("Per-server connection options", .timeLimit(.minutes(4)))
struct ServerOptionsTests {
    static func configuration(_ servers: String) throws -> CollectorConfiguration {
        try ConfigurationFile.parse(Data(#"{"repository": {"dsn": "dbname=powa"}, "servers": \#(servers)}"#.utf8))
    }

    static let server = RemoteServer(
        id: 7, hostname: "db1", alias: "orders", port: 5432, username: "powa", dbname: "powa", frequency: 300)

    @Test("a server takes *, then host:port, alias and id, the most specific winning")
    func precedence() throws {
        let options = try Self.configuration(
            """
            {"*": {"sslmode": "require", "connect_timeout": 5, "sslrootcert": "/ca"},
             "db1:5432": {"sslmode": "verify-ca"}, "orders": {"sslmode": "verify-full", "sslcert": "/c"},
             "7": {"sslkey": "/k"}, "other": {"sslmode": "disable"}}
            """
        ).serverOptions
        #expect(
            options.options(for: Self.server).map { "\($0.keyword)=\($0.value)" }
                == ["connect_timeout=5", "sslcert=/c", "sslkey=/k", "sslmode=verify-full", "sslrootcert=/ca"])
        var plain = Self.server
        plain.alias = nil
        plain.port = 5433
        #expect(
            options.options(for: plain).map { "\($0.keyword)=\($0.value)" }
                == ["connect_timeout=5", "sslkey=/k", "sslmode=require", "sslrootcert=/ca"])
    }

    @Test(
        "only libpq's keywords, not those of powa_servers, and never a value in an error",
        arguments: [
            (#"{"*": {"sslmod": "require"}}"#, #""servers.*.sslmod": sslmod is not a libpq connection keyword"#),
            (#"{"*": {"password": "S3cret"}}"#, #""servers.*.password": password comes from powa_servers"#),
            (#"{"x": {"host": "elsewhere"}}"#, #""servers.x.host": host comes from powa_servers"#),
            (#"{"x": {"sslmode": true}}"#, #""servers.x.sslmode" must be a string, not true"#),
            (#"{"x": "sslmode=require"}"#, #""servers.x" must be an object of libpq keywords, not a string"#),
            (#"["x"]"#, #""servers" must be an object of servers"#),
            (#"{"x": {"sslpassword_file": "/nonexistent/S3cret"}}"#, #""servers.x.sslpassword_file": the file cannot be read"#),
        ])
    func refused(servers: String, message: String) {
        let error = #expect(throws: ConfigurationError.self) { try Self.configuration(servers) }
        #expect(error?.description.contains(message) == true, "\(error?.description ?? "")")
        #expect(error?.description.contains("S3cret") == false)
        #expect(error?.description.contains("elsewhere") == false)
    }

    @Test("sslpassword_file gives sslpassword, without its final newline")
    func passwordFile() throws {
        let path = "/tmp/powa-sslpassword-\(UInt32.random(in: 0...UInt32.max))"
        try "key pass\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { unlink(path) }
        let options = try Self.configuration(#"{"*": {"sslpassword_file": "\#(path)"}}"#).serverOptions
        #expect(options.options(for: Self.server).map { "\($0.keyword)=\($0.value)" } == ["sslpassword=key pass"])
    }
}
