import Foundation
import PostgresClient

/// Extra libpq keywords for the connections to remote servers (`servers` in the
/// configuration), for what `powa_servers` has no column for: TLS (`sslmode`, `sslrootcert`,
/// client certificates), `passfile`, `service`, `target_session_attrs`...
///
/// ```json
/// "servers": {
///     "*": {"sslmode": "verify-full", "sslrootcert": "/etc/powa/ca.pem"},
///     "orders-db": {"sslcert": "/etc/powa/client.crt", "sslkey": "/etc/powa/client.key",
///                   "sslpassword_file": "/etc/powa/client.pass"}
/// }
/// ```
///
/// A server takes `*`, then its `host:port`, its alias, then its id, each overriding the one
/// before (the most specific wins). Only libpq's own keywords are accepted (`PQconndefaults`),
/// except those `powa_servers` sets (host, port, user, password, dbname) and ours
/// (`application_name`); `sslpassword_file` reads `sslpassword` from a file. Values travel as
/// keyword/value pairs, never pasted into a connection string.
public struct ServerConnectionOptions: Sendable, Equatable {
    /// The keywords by selector (`*`, alias, `host:port` or id).
    public private(set) var bySelector: [String: [String: String]] = [:]

    public init() {}

    /// Keywords that `powa_servers` or the collector sets.
    static let reserved: Set<String> = ["host", "port", "user", "password", "dbname", "application_name", "replication"]

    /// The keywords for `server`, by keyword.
    public func options(for server: RemoteServer) -> [ConnectionConfiguration.Parameter] {
        var merged: [String: String] = [:]
        var selectors = ["*", "\(server.hostname):\(server.port)"]
        if let alias = server.alias, !alias.isEmpty { selectors.append(alias) }
        selectors.append("\(server.id)")
        for selector in selectors {
            merged.merge(bySelector[selector] ?? [:]) { $1 }
        }
        return merged.sorted { $0.key < $1.key }.map { ConnectionConfiguration.Parameter($0.key, $0.value) }
    }

    /// From the `servers` object of the configuration file.
    static func parse(_ value: JSONValue) throws(ConfigurationError) -> ServerConnectionOptions {
        guard case .object(let selectors) = value else {
            throw ConfigurationError(
                "\"servers\" must be an object of servers (\"*\", an alias, host:port or an id), not \(value.summary)")
        }
        var options = ServerConnectionOptions()
        for (selector, keywords) in selectors {
            let name = "servers.\(selector)"
            guard case .object(let pairs) = keywords else {
                throw ConfigurationError("\"\(name)\" must be an object of libpq keywords, not \(keywords.summary)")
            }
            var parsed: [String: String] = [:]
            for (keyword, value) in pairs {
                let key = "\(name).\(keyword)"
                let text: String
                switch value {
                case .string(let string): text = string
                case .number(let number) where number == number.rounded() && abs(number) < 1e15: text = "\(Int(number))"
                default: throw ConfigurationError("\"\(key)\" must be a string, not \(value.summary)")
                }
                if keyword == "sslpassword_file" {
                    guard let data = FileManager.default.contents(atPath: text),
                        let password = String(data: data, encoding: .utf8)
                    else { throw ConfigurationError("\"\(key)\": the file cannot be read") }
                    parsed["sslpassword"] = password.trimmingCharacters(in: .newlines)
                    continue
                }
                guard !reserved.contains(keyword) else {
                    throw ConfigurationError("\"\(key)\": \(keyword) comes from powa_servers (or the collector), not from here")
                }
                guard ConnectionConfiguration.keywords.contains(keyword) else {
                    throw ConfigurationError("\"\(key)\": \(keyword) is not a libpq connection keyword")
                }
                parsed[keyword] = text
            }
            options.bySelector[selector] = parsed
        }
        return options
    }
}
