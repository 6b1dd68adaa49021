import Testing

@testable import PoWACollector

/// The pinned settings of a session to a database without powa, in its startup packet.
@Suite("Pinned settings at start-up")
struct StartupOptionsTests {
    @Test(
        "every pinned setting but the encoding (libpq's keyword), search_path pg_catalog, transaction_timeout from 17 on, no space in a value"
    )
    func options() {
        let sixteen = PinnedSettings.startupOptions(serverVersionNumber: 160_004)
        #expect(sixteen.hasPrefix("-c statement_timeout=0 "))
        #expect(sixteen.contains("-c DateStyle=ISO,YMD ") && sixteen.contains("-c lock_timeout=2s"))
        #expect(sixteen.hasSuffix("-c search_path=pg_catalog") && !sixteen.contains("client_encoding"))
        #expect(!sixteen.contains("transaction_timeout"))
        #expect(PinnedSettings.startupOptions(serverVersionNumber: 180_000).hasSuffix("-c transaction_timeout=0"))
        let words = sixteen.split(separator: " ")
        #expect(words.count == 2 * (PinnedSettings.values.count - 1 + 1))
    }
}
