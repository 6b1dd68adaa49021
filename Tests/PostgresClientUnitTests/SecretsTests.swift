import Testing

@testable import PostgresClient

/// Finding the passwords of a connection string, and masking them, without a server.
@Suite("Secret masking")
struct SecretsTests {
    @Test(
        "the password of every form of connection string is found, parseable or not",
        arguments: [
            ("postgresql://powa:S3cret@db/powa", ["S3cret"]),
            ("postgresql://powa:p%40ss%3Aword@db:5432/powa?sslmode=require", ["p@ss:word", "p%40ss%3Aword"]),
            ("host=db password=S3cret dbname=powa", ["S3cret"]),
            ("host=db password = 'sec ret' dbname=powa", ["sec ret"]),
            ("postgresql://db/powa?password=S3cret&sslmode=require", ["S3cret"]),
            // Not parseable by libpq: found anyway, so that libpq's own error cannot show it.
            ("postgresql://powa:S3cret@[db/powa", ["S3cret"]),
            ("host=db password=S3cret dbname='unterminated", ["S3cret"]),
            ("host=db dbname=powa", []),
        ])
    func found(connectionString: String, expected: [String]) {
        let passwords = Set(Secrets.passwords(inConnectionString: connectionString))
        #expect(passwords == Set(expected), "\(connectionString)")
    }

    @Test("masking replaces each secret in message, detail and hint; an empty secret masks nothing")
    func masking() {
        var error = PostgresError(code: .connectionFailed, message: "could not use S3cret here, S3cret")
        error.detail = "detail S3cret"
        error.hint = "hint"
        let masked = error.masking(["S3cret", ""])
        #expect(masked.message == "could not use ******** here, ********")
        #expect(masked.detail == "detail ********")
        #expect(masked.hint == "hint")
        #expect(Secrets.mask("nothing to hide", [""]) == "nothing to hide")
    }
}
