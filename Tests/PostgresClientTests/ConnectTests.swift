import Foundation
import Glibc
import PostgresClient
import TestBed
import Testing

@Suite("Connecting", .timeLimit(.minutes(4)))
struct ConnectTests {
    @Test("connects with a URI, a key/value string and a Unix socket")
    func connectionStringForms() async throws {
        let bed = try await TestBed.shared()
        let port = bed.repositoryPort
        let forms = [
            "postgresql://postgres@127.0.0.1:\(port)/powa",
            "host=127.0.0.1 port=\(port) user=postgres dbname=powa",
            "host=\(bed.socketDirectory) port=\(port) user=postgres dbname=powa",
            "postgresql:///powa?host=\(bed.socketDirectory)&port=\(port)&user=postgres",
        ]
        for form in forms {
            let connection = try await PostgresConnection.connect(.init(connectionString: form))
            let result = try await connection.query("SELECT current_database(), inet_server_port()")
            #expect(result.rows[0][0] == "powa")
            let viaSocket = form.contains(bed.socketDirectory)
            #expect(result.rows[0][1] == (viaSocket ? nil : "\(port)"), "\(form)")
            connection.close()
        }
    }

    @Test("a wrong password fails with libpq's message and the password appears nowhere")
    func wrongPassword() async throws {
        let bed = try await TestBed.shared()
        let secret = "Wr0ng-s3cret-xyzzy"
        let forms = [
            "host=127.0.0.1 port=\(bed.repositoryPort) user=powa_scram password=\(secret) dbname=powa",
            "postgresql://powa_scram:\(secret)@127.0.0.1:\(bed.repositoryPort)/powa",
        ]
        for form in forms {
            let error = try await #require(throws: PostgresError.self) {
                _ = try await PostgresConnection.connect(.init(connectionString: form))
            }
            #expect(error.code == .connectionFailed)
            #expect(error.message.contains("password authentication failed for user \"powa_scram\""))
            for text in [error.description, String(reflecting: error), "\(error)", error.localizedDescription] {
                #expect(!text.contains(secret), "password leaked in: \(text)")
            }
        }
    }

    @Test("a password from PGPASSFILE authenticates against scram-sha-256")
    func passwordFile() async throws {
        let bed = try await TestBed.shared()
        let environment = ProcessInfo.processInfo.environment
        #expect(environment["PGPASSFILE"] != nil)
        let connection = try await PostgresConnection.connect(
            .init(connectionString: "host=127.0.0.1 port=\(bed.repositoryPort) user=powa_scram dbname=powa"))
        defer { connection.close() }
        let result = try await connection.query(
            "SELECT auth_method FROM pg_hba_file_rules WHERE $1 = ANY(user_name)", ["powa_scram"])
        #expect(result.rows.first?[0] == "scram-sha-256")
        let me = try await connection.query("SELECT current_user")
        #expect(me.rows[0][0] == "powa_scram")
    }

    @Test("a listener that accepts and never answers fails at the connect deadline")
    func silentListener() async throws {
        let listener = try LoopbackListener()
        defer { listener.close() }
        let started = ContinuousClock.now
        let error = try await #require(throws: PostgresError.self) {
            _ = try await PostgresConnection.connect(
                .init(
                    connectionString: "host=127.0.0.1 port=\(listener.port) user=x dbname=x",
                    connectTimeout: .milliseconds(800)))
        }
        #expect(error.code == .timedOut)
        #expect(ContinuousClock.now - started >= .milliseconds(800))
    }
}
