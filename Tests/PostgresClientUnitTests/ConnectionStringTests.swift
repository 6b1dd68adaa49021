import PostgresClient
import Testing

/// Connection strings libpq cannot parse: refused before any network, their passwords unsaid.
@Suite("Malformed connection strings")
struct ConnectionStringTests {
    @Test("a malformed connection string is refused without echoing its password")
    func malformedConnectionString() async throws {
        let secret = "Pl41n-secret-qq"
        let error = try await #require(throws: PostgresError.self) {
            _ = try await PostgresConnection.connect(
                .init(connectionString: "host=127.0.0.1 password=\(secret) bogus_option=\(secret)"))
        }
        #expect(error.code == .invalidConnectionString)
        #expect(error.message.contains("bogus_option"))
        #expect(!String(reflecting: error).contains(secret))
    }

    @Test("a malformed connection string's error never shows its password")
    func parseErrorMasked() async throws {
        let error = try await #require(throws: PostgresError.self) {
            _ = try await PostgresConnection.connect(
                ConnectionConfiguration(connectionString: "postgresql://powa:S3cret@[db/powa"))
        }
        #expect(!error.description.contains("S3cret"))
        #expect(error.code == .invalidConnectionString)
    }
}
