import Foundation

/// Quotes identifiers read from the repository or from a NOTIFY payload, as PostgreSQL's
/// `quote_ident` does for any name: always in double quotes, inner quotes doubled. Nothing
/// else is ever pasted into SQL.
enum SQLIdentifier {
    static func quote(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\0", with: "").replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
