import ArgumentParser

/// The options of the benchmarks that run this collector on the scale bed (`ScaleBed`) with
/// query texts left out and not, one run after the other (`scale`, `spool`): the remote
/// clusters, the runs, the snapshot slots.
struct TextMethodOptions: ParsableArguments {
    @Option(help: "Remote clusters the servers are spread over.")
    var clusters = 4

    @Option(help: "The runs, comma-separated: ours (skip_known_query_texts on), ours-full (off).")
    var methods = "ours,ours-full"

    @Option(
        name: .customLong("max-concurrent-snapshots"),
        help: "The collector's max_concurrent_snapshots (default: the collector's own).")
    var maxConcurrentSnapshots: Int?

    var selectedMethods: [String] { methods.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }

    /// Checks `--methods` and that `servers` fit on the clusters.
    func check(servers: [Int]) throws {
        try ScaleBed.validate(servers: servers, clusters: clusters)
        let unknown = selectedMethods.filter { !["ours", "ours-full"].contains($0) }
        guard unknown.isEmpty, !selectedMethods.isEmpty else {
            throw ValidationError("--methods: unknown \(unknown.joined(separator: ", ")); use ours, ours-full")
        }
    }

    /// The collector's settings for a run of `method`.
    func settings(method: String) -> [String: String] {
        var settings: [String: String] = [:]
        if let maxConcurrentSnapshots { settings["max_concurrent_snapshots"] = String(maxConcurrentSnapshots) }
        if method == "ours-full" { settings.merge(CollectorBench.fullTextSettings) { $1 } }
        return settings
    }

    /// The slots, for a report's first line.
    var summary: String { "max_concurrent_snapshots \(maxConcurrentSnapshots.map(String.init) ?? "default")" }
}
