import Foundation
import PoWACollector
import PostgresClient
import TestBed
import Testing

/// `servers` in the configuration against a real remote: TLS with a client certificate.
@Suite("Per-server connection options, over TLS", .timeLimit(.minutes(4)))
struct ClientCertificateTests {
    static func configuration(_ servers: String) throws -> CollectorConfiguration {
        try ConfigurationFile.parse(Data(#"{"repository": {"dsn": "dbname=powa"}, "servers": \#(servers)}"#.utf8))
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
