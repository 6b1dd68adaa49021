import Testing

@testable import PoWACollector

@Suite("Quoted identifiers")
struct SQLIdentifierTests {
    @Test("always quoted, inner quotes doubled, NUL dropped, anything else kept as it is")
    func quote() {
        #expect(SQLIdentifier.quote("powa_statements_src") == "\"powa_statements_src\"")
        #expect(SQLIdentifier.quote("a\"b") == "\"a\"\"b\"")
        #expect(SQLIdentifier.quote("x\0y") == "\"xy\"")
        #expect(SQLIdentifier.quote("") == "\"\"")
        #expect(SQLIdentifier.quote("été; DROP \"t\"") == "\"été; DROP \"\"t\"\"\"")
    }
}
