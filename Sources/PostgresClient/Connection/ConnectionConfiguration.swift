import CLibPQ
import Glibc

/// How to reach a PostgreSQL server: a libpq connection string and/or keyword parameters.
///
/// Everything libpq supports keeps working: URIs and key/value strings, Unix sockets,
/// multiple hosts, `.pgpass` and `PGPASSFILE`, service files, `PG*` environment variables, TLS
/// and client certificates. Parameters are applied in order, the last one winning:
/// `defaults`, then the expanded `connectionString`, then `overrides`.
public struct ConnectionConfiguration: Sendable {
    /// One libpq keyword and its value (e.g. `application_name`).
    public struct Parameter: Sendable, Hashable {
        public var keyword: String
        public var value: String
        public init(_ keyword: String, _ value: String) {
            self.keyword = keyword
            self.value = value
        }
    }

    /// A libpq connection string (URI or key/value), or nil to use parameters only.
    public var connectionString: String?
    /// Parameters the connection string may override (e.g. a default `connect_timeout`).
    public var defaults: [Parameter]
    /// Parameters that override the connection string (e.g. `application_name`).
    public var overrides: [Parameter]
    /// The deadline for establishing the connection, enforced by this layer (libpq's
    /// non-blocking connect does not enforce `connect_timeout`).
    public var connectTimeout: Duration

    public init(
        connectionString: String? = nil,
        defaults: [Parameter] = [],
        overrides: [Parameter] = [],
        connectTimeout: Duration = .seconds(10)
    ) {
        self.connectionString = connectionString
        self.defaults = defaults
        self.overrides = overrides
        self.connectTimeout = connectTimeout
    }

    /// The keyword/value pairs handed to `PQconnectStartParams`, in order.
    var orderedParameters: [Parameter] {
        defaults + (connectionString.map { [Parameter("dbname", $0)] } ?? []) + overrides
    }

    /// Whether opening a connection may look a host name up (which blocks, inside libpq's
    /// connect steps): unless every host is an IP address or a socket, or `hostaddr` is
    /// given. A connection string, a service or a host from the environment may name anything:
    /// taken to look up.
    var mayLookUpNames: Bool {
        guard connectionString == nil else { return true }
        var last: [String: String] = [:]
        for parameter in orderedParameters { last[parameter.keyword] = parameter.value }
        if last["service"] != nil { return true }
        if let hostaddr = last["hostaddr"], !hostaddr.isEmpty { return false }
        guard let host = last["host"], !host.isEmpty else { return true }
        return host.split(separator: ",", omittingEmptySubsequences: false).contains { !Self.isLiteral(String($0)) }
    }

    /// An IP address, or a socket's directory (libpq looks neither up).
    static func isLiteral(_ host: String) -> Bool {
        if host.hasPrefix("/") || host.hasPrefix("@") { return true }
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    /// Every password this configuration carries, to be masked from any message.
    var secrets: [String] {
        var secrets = orderedParameters.filter { $0.keyword == "password" }.map(\.value)
        if let connectionString { secrets += Secrets.passwords(inConnectionString: connectionString) }
        return secrets.filter { !$0.isEmpty }
    }

    /// Every connection keyword this libpq knows (`PQconndefaults`), e.g. `sslmode`.
    public static let keywords: Set<String> = {
        guard let options = PQconndefaults() else { return [] }
        defer { PQconninfoFree(options) }
        var keywords: Set<String> = []
        var option = options
        while let keyword = option.pointee.keyword {
            keywords.insert(String(cString: keyword))
            option += 1
        }
        return keywords
    }()
}

extension ConnectionConfiguration {
    /// Why libpq cannot parse `connectionString` (URI or key/value), checked before any
    /// connection; nil when it can. libpq's own words are kept only when they name an unknown
    /// keyword: its other messages quote the string, maybe a piece of its password.
    public static func parseProblem(_ connectionString: String) -> String? {
        var errorMessage: UnsafeMutablePointer<CChar>?
        let options = PQconninfoParse(connectionString, &errorMessage)
        let message = errorMessage.map { String(cString: $0).trimmedMessage }
        if let errorMessage { PQfreemem(errorMessage) }
        if let options {
            PQconninfoFree(options)
            return nil
        }
        if let message, message.hasPrefix("invalid connection option \"") { return message }
        return "libpq cannot parse it (its words are not shown: they may quote a password)"
    }
}
