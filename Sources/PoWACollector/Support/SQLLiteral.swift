/// Quotes a text as an SQL string literal (`standard_conforming_strings`, which every session
/// pins): in single quotes, inner quotes doubled. For values that cannot travel as parameters,
/// as in a COPY's query or a statement shown to paste.
enum SQLLiteral {
    static func quote(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "''") + "'"
    }
}
