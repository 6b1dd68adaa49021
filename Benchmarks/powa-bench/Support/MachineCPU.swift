import Foundation
import Glibc

/// The machine's busy CPU seconds so far (all CPUs, /proc/stat: everything but idle and
/// iowait), to tell how much else ran during a measurement: this machine is shared, and a
/// figure taken while something else kept the CPUs busy is worth less.
enum MachineCPU {
    static func busySeconds() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") })
        else { return 0 }
        let values = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard values.count >= 5 else { return 0 }
        let total = values.prefix(8).reduce(0, +)
        return (total - values[3] - values[4]) / ProcStat.clockTicks
    }
}
