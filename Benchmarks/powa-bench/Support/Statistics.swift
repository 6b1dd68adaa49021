import Synchronization

/// Figures over the runs of a benchmark.
struct RunStatistics {
    /// One value per run, in run order.
    let values: [Double]

    var best: Double { values.max() ?? 0 }

    var median: Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return 0 }
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }
}

extension Duration {
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// A number with `decimals` decimals and thousands separators, e.g. 1,234,567 or 0.97.
func formatted(_ value: Double, decimals: Int = 0) -> String {
    var factor = 1.0
    for _ in 0..<decimals { factor *= 10 }
    let rounded = (value * factor).rounded() / factor
    let negative = rounded < 0
    let integer = Int(abs(rounded).rounded(.down))
    var digits = String(integer)
    var grouped = ""
    while digits.count > 3 {
        grouped = "," + digits.suffix(3) + grouped
        digits.removeLast(3)
    }
    grouped = digits + grouped
    if decimals > 0 {
        let fraction = Int(((abs(rounded) - Double(integer)) * factor).rounded())
        var fractionText = String(fraction)
        while fractionText.count < decimals { fractionText = "0" + fractionText }
        grouped += "." + fractionText
    }
    return (negative ? "-" : "") + grouped
}

/// A plain-text table: the first column left-aligned, the others right-aligned.
func table(_ header: [String], _ rows: [[String]]) -> String {
    let all = [header] + rows
    let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { index, cell in
            let padding = String(repeating: " ", count: widths[index] - cell.count)
            return index == 0 ? cell + padding : padding + cell
        }.joined(separator: "   ")
    }
    let rule = widths.map { String(repeating: "-", count: $0) }.joined(separator: "   ")
    return ([line(header), rule] + rows.map(line)).joined(separator: "\n")
}

/// PASS or MISS.
func verdict(_ met: Bool) -> String { met ? "PASS" : "MISS" }

/// A value behind a lock, shared by the tasks of a benchmark.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) { mutex = Mutex(value) }

    func withLock<Result>(_ body: (inout Value) -> Result) -> Result {
        mutex.withLock { body(&$0) }
    }
}
