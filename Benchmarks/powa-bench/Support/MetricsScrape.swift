import TestBed

/// One read of a collector's `/metrics` (`http.listen`): the value of each sample line, by its
/// name and labels as written (`powa_collector_spool_snapshots_dropped_total{reason="full"}`).
struct MetricsScrape: Sendable {
    let samples: [String: Double]

    static func read(_ url: String) async throws -> MetricsScrape {
        let (status, body) = try await httpGet(url)
        guard status == 200 else { throw BenchError("GET \(url): HTTP \(status)") }
        var samples: [String: Double] = [:]
        for line in body.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            samples[String(line[..<space])] = value
        }
        return MetricsScrape(samples: samples)
    }

    /// The sum of the samples of `name`, whatever their labels (0 when there are none).
    func total(_ name: String) -> Double {
        samples.filter { $0.key == name || $0.key.hasPrefix(name + "{") }.values.reduce(0, +)
    }
}
