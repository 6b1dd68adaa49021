/// Text array literals for parameters (`$1::text[]`), so that a list of values travels as one
/// parameter and never as SQL.
enum PostgresArray {
    /// `{"a","b"}`: every element quoted, backslashes and double quotes escaped.
    static func text(_ elements: [String]) -> String {
        let quoted = elements.map { element -> String in
            var escaped = ""
            for character in element {
                if character == "\\" || character == "\"" { escaped.append("\\") }
                escaped.append(character)
            }
            return "\"" + escaped + "\""
        }
        return "{" + quoted.joined(separator: ",") + "}"
    }
}

extension PostgresArray {
    /// `{1,2,3}`, in ascending order.
    static func integers(_ elements: some Collection<Int>) -> String {
        "{" + elements.sorted().map(String.init).joined(separator: ",") + "}"
    }
}
