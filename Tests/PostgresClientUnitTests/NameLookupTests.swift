import Testing

@testable import PostgresClient

/// Which connections may look a host name up, the one connect step that blocks: those run
/// their steps on threads of their own, the others in the reactor.
@Suite("Name lookups of a connect")
struct NameLookupTests {
    private func lookup(_ parameters: [(String, String)], connectionString: String? = nil) -> Bool {
        ConnectionConfiguration(
            connectionString: connectionString, overrides: parameters.map { ConnectionConfiguration.Parameter($0.0, $0.1) }
        ).mayLookUpNames
    }

    @Test("IP addresses, sockets and hostaddr need no lookup; names, services, connection strings and the environment may")
    func hosts() {
        #expect(!lookup([("host", "127.0.0.1")]))
        #expect(!lookup([("host", "::1"), ("port", "5432")]))
        #expect(!lookup([("host", "/var/run/postgresql")]))
        #expect(!lookup([("host", "10.0.0.1,10.0.0.2")]))
        #expect(!lookup([("host", "db.example.com"), ("hostaddr", "10.0.0.1")]))
        #expect(lookup([("host", "db.example.com")]))
        #expect(lookup([("host", "10.0.0.1,db.example.com")]))
        #expect(lookup([("host", "127.0.0.1"), ("service", "powa")]))
        #expect(lookup([("dbname", "powa")]), "PGHOST may name a host")
        #expect(lookup([("host", "127.0.0.1")], connectionString: "host=127.0.0.1"))
        // The last value wins, as in libpq.
        #expect(!lookup([("host", "db.example.com"), ("host", "127.0.0.1")]))
    }
}
