import Foundation

/// A certificate authority of a test's own, with a server certificate for 127.0.0.1 and a
/// client certificate for one role; the server's is valid for 127.0.0.1 and localhost, made with openssl (EC keys: quick to make).
public struct TLSCertificates: Sendable {
    public let directory: String
    public var caCertificate: String { directory + "/ca.crt" }
    public var serverCertificate: String { directory + "/server.crt" }
    public var serverKey: String { directory + "/server.key" }
    public var clientCertificate: String { directory + "/client.crt" }
    /// Mode 0600, as libpq requires of a key file.
    public var clientKey: String { directory + "/client.key" }

    public init(clientRole role: String) async throws {
        directory = "/tmp/powa-tls-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
        let script = """
            set -e
            cd "$0"
            openssl req -x509 \(key) -days 2 -subj /CN=powa-test-ca -keyout ca.key -out ca.crt
            openssl req \(key) -subj /CN=127.0.0.1 -keyout server.key -out server.csr
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > server.ext
            openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.crt
            openssl req \(key) -subj /CN=\(role) -keyout client.key -out client.csr
            openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out client.crt
            chmod 600 client.key server.key
            """
        try await TestBed.run("/bin/sh", ["-c", script, directory])
    }

    public func remove() { try? FileManager.default.removeItem(atPath: directory) }
}

extension TestBed {
    /// Makes the remote at `index` serve TLS with `certificates`, and accept `role` only over
    /// TLS with a client certificate of their authority (every other role as before).
    public func requireClientCertificates(remote index: Int, role: String, _ certificates: TLSCertificates)
        async throws
    {
        let data = remoteDataDirectories[index]
        for (source, name) in [
            (certificates.serverCertificate, "server.crt"), (certificates.serverKey, "server.key"),
            (certificates.caCertificate, "ca.crt"),
        ] {
            try? FileManager.default.removeItem(atPath: data + "/" + name)
            try FileManager.default.copyItem(atPath: source, toPath: data + "/" + name)
        }
        try await Self.run(
            "/bin/sh", ["-c", "chown postgres: \"$0\"/server.* \"$0\"/ca.crt && chmod 600 \"$0\"/server.key", data])
        let hba = try String(contentsOfFile: data + "/pg_hba.conf", encoding: .utf8)
        try ("hostssl all \(role) 127.0.0.1/32 cert\nhost all \(role) 127.0.0.1/32 reject\n" + hba).write(
            toFile: data + "/pg_hba.conf", atomically: true, encoding: .utf8)
        let admin = try await connect(port: remotePorts[index], database: "postgres")
        defer { admin.close() }
        try await admin.execute("CREATE ROLE \(role) LOGIN SUPERUSER")
        // (ALTER SYSTEM refuses to run in the implicit transaction of several statements.)
        for setting in ["ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'", "ssl_ca_file = 'ca.crt'"] {
            try await admin.execute("ALTER SYSTEM SET \(setting)")
        }
        _ = try await admin.query("SELECT pg_reload_conf()")
    }
}
