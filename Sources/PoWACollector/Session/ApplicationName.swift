/// The `application_name` of each connection, as the Python collector sets them, so a DBA (and
/// powa-web) recognises the collector's sessions in `pg_stat_activity`.
enum ApplicationName {
    static func main(version: String) -> String { "PoWA collector - main thread (\(version))" }
    /// The short session that answers a RELOAD (not named like the main one: powa-web counts
    /// those as collectors).
    static let controlReply = "PoWA collector - control reply"
    /// `powa-collector status` and `reload`: a client of the collector, as powa-web is.
    static let command = "PoWA collector - command"
    /// `powa-collector check`.
    static let check = "PoWA collector - check"
    static func worker(_ name: String) -> String { fitted("PoWA collector - worker \(name)") }
    static func workerRepository(_ name: String) -> String { fitted("PoWA collector - repo_conn for worker \(name)") }
    /// PoWA 5's per-database sessions (the Python collector leaves them unnamed).
    static func workerDatabase(_ name: String, _ database: String) -> String {
        fitted("PoWA collector - worker \(name) db \(database)")
    }

    /// The most a server keeps of a name (NAMEDATALEN - 1 bytes).
    static let maximumLength = 63

    /// `name` cut to what the server keeps, on a character boundary: a longer name (a long
    /// alias or host name) would make the server send a NOTICE each time it is set, logged at
    /// every snapshot.
    static func fitted(_ name: String) -> String {
        guard name.utf8.count > maximumLength else { return name }
        var fitted = ""
        for character in name {
            guard fitted.utf8.count + character.utf8.count <= maximumLength else { break }
            fitted.append(character)
        }
        return fitted
    }
}
