/// A statement as `powa_statements` keys it for one server: `(userid, dbid, queryid)`, exact
/// (the two oids in 32 bits each: 16 bytes a statement).
struct StatementKey: Hashable, Sendable, Codable {
    let userid: UInt32
    let dbid: UInt32
    let queryid: Int64
}

extension StatementKey {
    /// From integers as a server prints them; nil when an oid is out of its range.
    init?(userid: Int64, dbid: Int64, queryid: Int64) {
        guard let userid = UInt32(exactly: userid), let dbid = UInt32(exactly: dbid) else { return nil }
        self.init(userid: userid, dbid: dbid, queryid: queryid)
    }

    /// The integer of a COPY text field: decimal digits with an optional minus sign. Nil for
    /// `\N` (NULL) or anything else.
    static func integer(_ field: UnsafeBufferPointer<UInt8>.SubSequence) -> Int64? {
        var index = field.startIndex
        guard index < field.endIndex else { return nil }
        let negative = field[index] == UInt8(ascii: "-")
        if negative { index += 1 }
        guard index < field.endIndex, field.endIndex - index <= 19 else { return nil }
        var value: Int64 = 0
        while index < field.endIndex {
            let digit = field[index] &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            let (times, overflow) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflowAgain) = times.addingReportingOverflow(Int64(digit))
            guard !overflow, !overflowAgain else {
                // -9223372036854775808 only: its magnitude does not fit before the sign.
                return negative && value == 922_337_203_685_477_580 && digit == 8 && index + 1 == field.endIndex
                    ? Int64.min : nil
            }
            value = sum
            index += 1
        }
        return negative ? -value : value
    }

    /// Keys as three PostgreSQL array literals (`{1,2}`), userids, dbids and queryids in the
    /// same order: what a session's settings carry to the remote (`KnownTextsOnRemote`).
    static func arrays(_ keys: some Collection<StatementKey>) -> (userids: String, dbids: String, queryids: String) {
        var userids = "{"
        var dbids = "{"
        var queryids = "{"
        userids.reserveCapacity(keys.count * 6)
        dbids.reserveCapacity(keys.count * 6)
        queryids.reserveCapacity(keys.count * 21)
        for (index, key) in keys.enumerated() {
            if index > 0 {
                userids += ","
                dbids += ","
                queryids += ","
            }
            userids += String(key.userid)
            dbids += String(key.dbid)
            queryids += String(key.queryid)
        }
        return (userids + "}", dbids + "}", queryids + "}")
    }
}
