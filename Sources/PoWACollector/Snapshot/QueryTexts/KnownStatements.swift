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
    private(set) var keys: Set<UInt64>?

    /// Whether it must be loaded before the next snapshot.
    var isLoaded: Bool { keys != nil }

    func load(layout: StatementRowLayout?, keys: Set<UInt64>) {
        self.layout = layout
        self.keys = keys
    }

    /// After a committed snapshot: the statements it saw.
    func replace(with seen: Set<UInt64>) {
        guard keys != nil else { return }
        keys = seen
    }

    func forget() {
        layout = nil
        keys = nil
    }
}
