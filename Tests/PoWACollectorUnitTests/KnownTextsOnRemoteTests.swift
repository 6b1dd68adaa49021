import Testing

@testable import PoWACollector

/// What the remote is sent to leave out the known texts: keys that can only be integers, as
/// bind parameters, and statements whose text never holds one.
@Suite("Known texts left out on the remote")
struct KnownTextsOnRemoteTests {
    @Test("the keys travel as three integer array literals, exact at the ends of their ranges; none is an empty set")
    func keyArrays() {
        let keys = [
            StatementKey(userid: UInt32.max, dbid: 0, queryid: Int64.min),
            StatementKey(userid: 10, dbid: 16384, queryid: Int64.max),
        ]
        let arrays = StatementKey.arrays(keys)
        #expect(arrays.userids == "{4294967295,10}")
        #expect(arrays.dbids == "{0,16384}")
        #expect(arrays.queryids == "{-9223372036854775808,9223372036854775807}")
        let none = StatementKey.arrays([StatementKey]())
        #expect(none.userids == "{}" && none.dbids == "{}" && none.queryids == "{}")
    }

    @Test("a key is read from a field of digits only: anything else in it is no key at all")
    func keysAreIntegers() {
        func integer(_ text: String) -> Int64? {
            Array(text.utf8).withUnsafeBufferPointer { StatementKey.integer($0[...]) }
        }
        for hostile in ["1;DROP TABLE x", "1}", "{1}", "1,2", "1 ", "--1", "1e3", "0x1f", "'1'", "\\N", ""] {
            #expect(integer(hostile) == nil, "\(hostile)")
        }
        #expect(integer("-9223372036854775808") == Int64.min)
        #expect(integer("9223372036854775808") == nil)
        #expect(StatementKey(userid: 4_294_967_296, dbid: 1, queryid: 1) == nil)
    }

    @Test("the statements carry no key: the keys are the settings' bind parameters, the COPY reads them from there")
    func noKeyInTheText() throws {
        #expect(KnownTextsOnRemote.setKeys.filter(\.isNumber) == "123")
        for placeholder in ["$1", "$2", "$3"] { #expect(KnownTextsOnRemote.setKeys.contains(placeholder)) }
        let columns = ["userid", "dbid", "queryid", "query", "calls"]
        let source = try #require(KnownTextsOnRemote(remote: columns, staging: ["srvid"] + columns))
        let copy = source.copyOutStatement(serverID: 7, schema: "\"public\"")
        #expect(copy.contains("current_setting('powa_collector.known_queryids')::pg_catalog.int8[]"))
        // The srvid, powa's argument 0: no other number, and one statement (no `;`) so that it
        // can run between a savepoint and its release.
        #expect(copy.filter(\.isNumber) == "708")  // 7, powa_statements_src(0), int8
        #expect(!copy.contains(";"))
    }

    @Test("columns are the staging table's, quoted: a remote of another shape is not trusted with the COPY")
    func columns() {
        let odd = ["userid", "dbid", "queryid", "query", "x\"; DROP TABLE powa_statements; --"]
        let source = KnownTextsOnRemote(remote: odd, staging: ["srvid"] + odd)
        #expect(source?.copyOutStatement(serverID: 1, schema: "\"powa\"").contains("s.\"x\"\"; DROP") == true)
        #expect(
            KnownTextsOnRemote(remote: ["userid", "dbid", "queryid", "query"], staging: ["srvid", "userid", "dbid", "queryid"])
                == nil)
        #expect(
            KnownTextsOnRemote(remote: ["userid", "queryid", "query"], staging: ["srvid", "userid", "queryid", "query"]) == nil)
    }
}
