/// The outcome of one statement: its rows (if it returns any) and its command tag.
public struct QueryResult: Sendable {
    /// The rows, in the order the server sent them.
    public let rows: [PostgresRow]
    /// The command tag, e.g. `SELECT 3` or `INSERT 0 1`.
    public let commandTag: String

    public init(rows: [PostgresRow], commandTag: String) {
        self.rows = rows
        self.commandTag = commandTag
    }

    /// The number of rows the command affected, from its tag (`UPDATE 3` is 3), if any.
    public var affectedRows: Int? {
        commandTag.split(separator: " ").last.flatMap { Int($0) }
    }
}
