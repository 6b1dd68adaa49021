import CLibPQ
import Foundation

/// Finds the passwords a connection carries and masks them in any text, so that neither an
/// error nor a log line can show one, whatever libpq or the server put in a message.
enum Secrets {
    static let mask = "********"

    /// Replaces every occurrence of each non-empty secret in `text`.
    static func mask(_ text: String, _ secrets: [String]) -> String {
        secrets.filter { !$0.isEmpty }.reduce(text) { $0.replacingOccurrences(of: $1, with: mask) }
    }

    /// The passwords in a libpq connection string, URI or key/value form. When libpq cannot
    /// parse it, the text after `password=` and the user-info password of a URI are taken
    /// anyway, so that the parse error itself cannot leak them.
    static func passwords(inConnectionString connectionString: String) -> [String] {
        var found: [String] = []
        var errorMessage: UnsafeMutablePointer<CChar>?
        if let options = PQconninfoParse(connectionString, &errorMessage) {
            defer { PQconninfoFree(options) }
            var option = options
            while let keyword = option.pointee.keyword {
                if String(cString: keyword) == "password", let value = option.pointee.val {
                    found.append(String(cString: value))
                }
                option += 1
            }
        }
        if let errorMessage { PQfreemem(errorMessage) }
        found += looselyParsedPasswords(connectionString)
        return found
    }

    private static func looselyParsedPasswords(_ text: String) -> [String] {
        var found: [String] = []
        // key/value: password=secret or password = 'sec ret'
        var rest = Substring(text)
        while let range = rest.range(of: "password") {
            rest = rest[range.upperBound...].drop(while: { $0 == " " })
            guard rest.first == "=" else { continue }
            rest = rest.dropFirst().drop(while: { $0 == " " })
            let value: Substring
            if rest.first == "'" {
                value = rest.dropFirst().prefix(while: { $0 != "'" })
            } else {
                value = rest.prefix(while: { $0 != " " && $0 != "&" })
            }
            if !value.isEmpty { found.append(String(value)) }
        }
        // URI: scheme://user:secret@host
        if let scheme = text.range(of: "://") {
            let authority = text[scheme.upperBound...].prefix(while: { $0 != "/" && $0 != "?" })
            if let at = authority.lastIndex(of: "@"),
                let colon = authority[..<at].firstIndex(of: ":")
            {
                let value = authority[authority.index(after: colon)..<at]
                if !value.isEmpty {
                    found.append(String(value))
                    found.append(String(value).removingPercentEncoding ?? String(value))
                }
            }
        }
        return found
    }
}
