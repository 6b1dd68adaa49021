import Foundation
import PoWACollector
import PostgresClient
import TestBed
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

    @Test(
        "a remote that requires TLS with a client certificate: reached with the server's options, refused without; a change reaches only its worker"
    )
    func clientCertificate() async throws {
        try await TestBed.withPrivate(name: "tls", port: 5475, remotes: 1) { bed in
            let role = "certuser"
            let certificates = try await TLSCertificates(clientRole: role)
            defer { certificates.remove() }
            try await bed.requireClientCertificates(remote: 0, role: role, certificates)
            let repository = try await ScratchRepository.create(on: bed)
            let port = bed.remotePorts[0]
            let secured = try await repository.register(port: port, alias: "tls-remote", username: role)
            let other = try await repository.register(
                port: port, hostname: "localhost", alias: "no-options", username: role)
            let tls = """
                {"sslmode": "verify-full", "sslrootcert": "\(certificates.caCertificate)",
                 "sslcert": "\(certificates.clientCertificate)", "sslkey": "\(certificates.clientKey)"}
                """
            var configuration = try Self.configuration(#"{"tls-remote": \#(tls)}"#)
            configuration.repositoryDSN = repository.dsn
            configuration.connectTimeout = 3
            let running = RunningCollector(configuration)
            _ = try await repository.waitForSnapshots(secured, count: 1)
            // Over TLS, with the client certificate.
            let admin = try await bed.connect(port: port, database: "postgres")
            defer { admin.close() }
            let worker = "PoWA collector - worker 127.0.0.1:\(port)"
            let session = try await admin.query(
                """
                SELECT a.pid::text, s.ssl::text, s.client_dn FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
                WHERE a.application_name = $1
                """, [worker]
            ).rows
            #expect(session.count == 1 && session.first?[1] == "true" && session.first?[2] == "/CN=\(role)", "\(session)")
            // Without the options: refused, and said so.
            let errors = try await repository.waitForErrors(other, containing: "could not connect")
            #expect(errors.contains("certificate") || errors.contains("rejects connection"), "\(errors)")

            // The options for every server, the same for the first: only the second restarts.
            var everyone = try Self.configuration(#"{"*": \#(tls)}"#)
            everyone.repositoryDSN = repository.dsn
            everyone.connectTimeout = 3
            try everyone.json.write(toFile: running.configurationPath, atomically: true, encoding: .utf8)
            #expect(await running.collector.reload())
            _ = try await repository.waitForSnapshots(other, count: 1)
            let after = try await admin.query(
                "SELECT pid::text FROM pg_stat_activity WHERE application_name = $1", [worker]
            ).rows
            #expect(after.first?[0] == session.first?[0], "the TLS server's worker kept its session")
            try await running.stop()
        }
    }
}
