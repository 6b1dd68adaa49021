/// PoWA 5: a pending REFRESH_DB_CAT for one server, applied at its next snapshot: the catalogs
/// of every database, or of the named ones. Requests arriving before that snapshot merge: names
/// add up, and "all" absorbs any list.
public enum CatalogRefresh: Sendable, Equatable {
    case all
    case databases(Set<String>)

    /// This request merged with another pending one.
    public func merged(with other: CatalogRefresh?) -> CatalogRefresh {
        switch (self, other) {
        case (_, nil): self
        case (.all, _), (_, .all?): .all
        case (.databases(let mine), .databases(let theirs)?): .databases(mine.union(theirs))
        }
    }
}
