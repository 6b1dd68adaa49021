import ArgumentParser

/// `--collector-env KEY=VALUE` (repeatable): variables for the measured collector's
/// environment, e.g. `MALLOC_ARENA_MAX=2`, shared by the benchmarks that start one.
struct CollectorEnvironment: ParsableArguments {
    @Option(
        name: .customLong("collector-env"),
        help: "KEY=VALUE for the collector's environment (repeatable), e.g. MALLOC_ARENA_MAX=2.")
    var items: [String] = []

    /// The variables; an item without `=` is ignored.
    var variables: [String: String] {
        Dictionary(
            items.compactMap { item -> (String, String)? in
                let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
                return parts.count == 2 ? (parts[0], parts[1]) : nil
            }, uniquingKeysWith: { $1 })
    }
}
