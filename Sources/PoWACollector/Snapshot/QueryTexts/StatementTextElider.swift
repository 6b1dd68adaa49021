import Glibc

/// Leaves out, from the rows of `powa_statements_src` on their way to the repository, the
/// query text of every statement the repository already knows.
///
/// `powa_statements_snapshot()` uses the text of a staged row only to insert a statement that
/// `powa_statements` does not have yet (`INSERT ... WHERE NOT EXISTS`); for every other row
/// the repository parses, compresses and throws the text away, which is most of what a
/// snapshot costs it. A left-out text travels as an empty field.
///
/// It works on COPY's text format as the rows stream, on libpq's bytes: fields are separated
/// by tab bytes (a tab inside a value is escaped as `\t`), so the fields are found without
/// decoding anything, and a row is written either whole or without the bytes of its text.
/// It also records the key of every row it sees, which become the known statements once the
/// snapshot is committed.
final class StatementTextElider {
    private let layout: StatementRowLayout
    private let known: Set<StatementKey>
    /// The keys of every row seen.
    private(set) var seen: Set<StatementKey> = []
    /// The keys of the rows whose text was left out.
    private(set) var elided: Set<StatementKey> = []
    /// Rows whose text was left out, and the bytes of text saved.
    private(set) var elidedRows = 0
    private(set) var elidedBytes = 0

    init(layout: StatementRowLayout, known: Set<StatementKey>) {
        self.layout = layout
        self.known = known
        seen.reserveCapacity(known.count)
        elided.reserveCapacity(known.count)
    }

    /// A `CopyRowRewrite`.
    func rewrite(_ row: UnsafeBufferPointer<UInt8>, into batch: inout [UInt8]) {
        guard let fields = locate(row),
            let userid = StatementKey.integer(row[fields.userid]),
            let dbid = StatementKey.integer(row[fields.dbid]),
            let queryid = StatementKey.integer(row[fields.queryid]),
            let key = StatementKey(userid: userid, dbid: dbid, queryid: queryid)
        else {
            batch.append(contentsOf: row)
            return
        }
        seen.insert(key)
        let text = fields.query
        // A NULL text (`\N`) stays NULL.
        let isNull =
            text.count == 2 && row[text.lowerBound] == UInt8(ascii: "\\") && row[text.lowerBound + 1] == UInt8(ascii: "N")
        guard known.contains(key), !isNull else {
            batch.append(contentsOf: row)
            return
        }
        guard !text.isEmpty else {
            // Left out by the remote already (`KnownTextsOnRemote`).
            batch.append(contentsOf: row)
            elided.insert(key)
            elidedRows += 1
            return
        }
        batch.append(contentsOf: row[..<text.lowerBound])
        batch.append(contentsOf: row[text.upperBound...])
        elided.insert(key)
        elidedRows += 1
        elidedBytes += text.count
    }

    /// The byte ranges of the four fields, or nil for a row that has too few fields.
    private func locate(_ row: UnsafeBufferPointer<UInt8>) -> (
        userid: Range<Int>, dbid: Range<Int>, queryid: Range<Int>, query: Range<Int>
    )? {
        guard let base = row.baseAddress, row.count > 0 else { return nil }
        // The row's final newline ends its last field.
        let end = row[row.count - 1] == UInt8(ascii: "\n") ? row.count - 1 : row.count
        var userid = 0..<0
        var dbid = 0..<0
        var queryid = 0..<0
        var query = 0..<0
        var start = 0
        for field in 0...layout.lastField {
            guard start <= end else { return nil }
            let fieldEnd: Int
            if let tab = memchr(base + start, 0x09, end - start) {
                fieldEnd = base.distance(to: tab.assumingMemoryBound(to: UInt8.self))
            } else {
                fieldEnd = end
            }
            let range = start..<fieldEnd
            switch field {
            case layout.userid: userid = range
            case layout.dbid: dbid = range
            case layout.queryid: queryid = range
            case layout.query: query = range
            default: break
            }
            start = fieldEnd + 1
        }
        return (userid, dbid, queryid, query)
    }
}
