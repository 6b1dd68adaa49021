/// Quotes identifiers read from the repository or from a NOTIFY payload, as PostgreSQL's
/// `quote_ident` does for any name: always in double quotes, inner quotes doubled (NUL bytes,
/// which no identifier may hold, dropped). Nothing else is ever pasted into SQL.
enum SQLIdentifier {
    /// (Byte by byte, not with Foundation's `replacingOccurrences`, which cost 4-6 % of the
    /// daemon's CPU: a few names are quoted for every source of every snapshot.)
    static func quote(_ name: String) -> String {
        var bytes: [UInt8] = [UInt8(ascii: "\"")]
        bytes.reserveCapacity(name.utf8.count + 2)
        for byte in name.utf8 where byte != 0 {
            bytes.append(byte)
            if byte == UInt8(ascii: "\"") { bytes.append(byte) }
        }
        bytes.append(UInt8(ascii: "\""))
        return String(decoding: bytes, as: UTF8.self)
    }
}
