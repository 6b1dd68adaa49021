import Testing

@testable import PoWACollector

/// Leaving out known texts from COPY text rows, without a server.
@Suite("Statement text elider")
struct StatementTextEliderTests {
    /// PoWA 5's staging table: srvid, ts, userid, dbid, toplevel, queryid, query, calls...
    static let layout = StatementRowLayout(columns: ["srvid", "ts", "userid", "dbid", "toplevel", "queryid", "query", "calls"])!

    static func row(userid: String = "10", dbid: String = "16384", queryid: String = "-42", query: String) -> [UInt8] {
        Array("1\t2026-11-29 16:00:00+00\t\(userid)\t\(dbid)\tt\t\(queryid)\t\(query)\t7\n".utf8)
    }

    static func key(_ userid: UInt32 = 10, _ dbid: UInt32 = 16384, _ queryid: Int64 = -42) -> StatementKey {
        StatementKey(userid: userid, dbid: dbid, queryid: queryid)
    }

    func rewrite(_ elider: StatementTextElider, _ rows: [[UInt8]]) -> [UInt8] {
        var batch: [UInt8] = []
        for row in rows { row.withUnsafeBufferPointer { elider.rewrite($0, into: &batch) } }
        return batch
    }

    @Test("the layout comes from the column names; a table without one of them has none")
    func layoutFromColumns() {
        #expect(Self.layout.userid == 2 && Self.layout.dbid == 3 && Self.layout.queryid == 5 && Self.layout.query == 6)
        #expect(Self.layout.lastField == 6)
        #expect(StatementRowLayout(columns: ["srvid", "userid", "dbid", "queryid"]) == nil)
    }

    @Test("a known statement's text is left out, and only its text; an unknown one passes whole")
    func knownAndUnknown() {
        let elider = StatementTextElider(layout: Self.layout, known: [Self.key()])
        // COPY escapes tabs, newlines and backslashes inside a value: they never split a field.
        let text = "SELECT 1 AS \"a\\tb\", 'x\\ny', '\\\\' -- é"
        let known = Self.row(query: text)
        let unknown = Self.row(queryid: "43", query: text)
        let batch = rewrite(elider, [known, unknown])
        #expect(batch == Self.row(query: "") + unknown)
        #expect(elider.elidedRows == 1 && elider.elidedBytes == text.utf8.count)
        #expect(elider.seen == [Self.key(), Self.key(10, 16384, 43)])
    }

    @Test(
        "rows it cannot read, NULL texts and NULL queryids pass whole, byte for byte; a known text the remote left out counts as left out"
    )
    func passWhole() {
        let elider = StatementTextElider(layout: Self.layout, known: [Self.key()])
        let rows = [
            Self.row(query: "\\N"),
            Self.row(queryid: "\\N", query: "SELECT 1"),
            Self.row(userid: "x10", query: "SELECT 1"),
            Array("1\t2\t10\t16384\n".utf8),
            Array("".utf8),
            Self.row(query: ""),
        ]
        #expect(rewrite(elider, rows) == rows.flatMap { $0 })
        // The last one: the known statement, its text left out by the remote.
        #expect(elider.elidedRows == 1 && elider.elided == [Self.key()] && elider.elidedBytes == 0)
    }

    @Test("the text as the last field, and a row without its final newline")
    func lastField() {
        let layout = StatementRowLayout(columns: ["userid", "dbid", "queryid", "query"])!
        let elider = StatementTextElider(layout: layout, known: [Self.key(1, 2, 3)])
        #expect(rewrite(elider, [Array("1\t2\t3\tSELECT 1\n".utf8)]) == Array("1\t2\t3\t\n".utf8))
        #expect(rewrite(elider, [Array("1\t2\t3\tSELECT 1".utf8)]) == Array("1\t2\t3\t".utf8))
    }

    @Test("integers of COPY text: signs, bounds, NULL and garbage")
    func integers() {
        func parse(_ text: String) -> Int64? {
            Array(text.utf8).withUnsafeBufferPointer { StatementKey.integer($0[...]) }
        }
        #expect(parse("0") == 0 && parse("4294967295") == 4_294_967_295 && parse("-42") == -42)
        #expect(parse("9223372036854775807") == .max && parse("-9223372036854775808") == .min)
        #expect(parse("9223372036854775808") == nil && parse("-9223372036854775809") == nil)
        #expect(parse("") == nil && parse("-") == nil && parse("\\N") == nil && parse("1e3") == nil && parse(" 1") == nil)
    }

    @Test("keys differing in one part fold apart")
    func folding() {
        let keys = [
            Self.key(), Self.key(11, 16384, -42), Self.key(10, 16385, -42), Self.key(10, 16384, -41), Self.key(16384, 10, -42),
        ]
        #expect(Set(keys).count == keys.count)
    }
}
