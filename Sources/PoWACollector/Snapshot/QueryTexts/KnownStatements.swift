/// The statements the repository knows for one server, kept by its worker from one snapshot
/// to the next so that their texts are not sent again (`skip_known_query_texts`).
///
/// Loaded from `powa_statements` at the worker's first snapshot on a new remote session, then
/// replaced after each committed snapshot by the statements that snapshot saw (all of which
/// the repository then knows). Forgotten when the remote session is replaced or a reload asks
/// the worker to re-check its server: a cache that might be stale is dropped, not trusted.
/// Trust is not needed anyway: `StatementTextRepair` checks every left-out text before
/// `powa_take_snapshot`.
final class KnownStatements {
    private(set) var layout: StatementRowLayout?
    private(set) var keys: Set<StatementKey>?
    /// The keys as the remote's settings carry them (made once for each set of keys).
    private var arrays: (userids: String, dbids: String, queryids: String)?
    /// The remote's statements source, when its rows have the staging table's columns: the
    /// remote leaves out the known texts itself (`KnownTextsOnRemote`); nil: the collector
    /// does, as the rows pass.
    var onRemote: KnownTextsOnRemote?

    /// Whether it must be loaded before the next snapshot.
    var isLoaded: Bool { keys != nil }

    func load(layout: StatementRowLayout?, keys: Set<StatementKey>, onRemote: KnownTextsOnRemote?) {
        self.layout = layout
        self.keys = keys
        self.onRemote = onRemote
        arrays = nil
    }

    /// After a committed snapshot: the statements it saw.
    func replace(with seen: Set<StatementKey>) {
        // Most snapshots see the same statements: keep the arrays made for them.
        guard keys != nil, seen != keys else { return }
        keys = seen
        arrays = nil
    }

    /// The keys as three array literals, for the remote's settings.
    var keyArrays: (userids: String, dbids: String, queryids: String) {
        if let arrays { return arrays }
        let made = StatementKey.arrays(keys ?? [])
        arrays = made
        return made
    }

    func forget() {
        layout = nil
        keys = nil
        onRemote = nil
        arrays = nil
    }
}
