/// A statement as `powa_statements` keys it for one server, `(userid, dbid, queryid)`, folded
/// into 64 bits: the set of known statements costs 8 bytes a statement, whatever their
/// number.
///
/// Two statements may fold into the same value. That is harmless by construction: a
/// statement taken for known has its text left out, and the repair step before
/// `powa_take_snapshot` (`StatementTextRepair`) finds every left-out text of a statement the
/// repository does not know, and restores it.
enum StatementKey {
    static func folded(userid: Int64, dbid: Int64, queryid: Int64) -> UInt64 {
        let ids = UInt64(truncatingIfNeeded: userid) << 32 | (UInt64(truncatingIfNeeded: dbid) & 0xffff_ffff)
        var value = UInt64(bitPattern: queryid) ^ (ids &* 0x9E37_79B9_7F4A_7C15)
        // splitmix64's finalizer: every input bit moves every output bit.
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        return value ^ (value >> 31)
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
}
