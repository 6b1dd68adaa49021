import Foundation
import Glibc

/// What /proc says of a running process (Linux): its CPU time, memory, threads and
/// descriptors, read while it runs (a collector is measured just before it is stopped).
struct ProcessStats: Sendable {
    /// utime + stime of every thread of the process (the kernel sums them for the process).
    let cpu: ChildProcess.CPUTime
    /// cutime + cstime: children it waited for (a collector should have none).
    let childrenCPU: ChildProcess.CPUTime
    let memory: ProcessMemory
    let threads: Int
    let openDescriptors: Int

    var totalCPUSeconds: Double { cpu.total + childrenCPU.total }

    static func read(pid: pid_t) throws -> ProcessStats {
        guard let stat = ProcStat.read(pid: pid) else { throw BenchError("unreadable /proc/\(pid)/stat") }
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let threads =
            status.split(separator: "\n").first { $0.hasPrefix("Threads:") }
            .flatMap { Int($0.split(whereSeparator: { $0 == " " || $0 == "\t" }).last ?? "") } ?? 0
        let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0
        return ProcessStats(
            cpu: ChildProcess.CPUTime(user: stat.user, system: stat.system),
            childrenCPU: ChildProcess.CPUTime(user: stat.childrenUser, system: stat.childrenSystem),
            memory: try ProcessMemory.read(statusPath: "/proc/\(pid)/status"),
            threads: threads,
            openDescriptors: descriptors)
    }

    /// /proc/<pid>/smaps_rollup as key -> kB (Rss, Pss, Anonymous, Private_Dirty, ...).
    static func smapsRollup(pid: pid_t) -> [String: Int] {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8) else { return [:] }
        var values: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if parts.count >= 2, parts[0].hasSuffix(":"), let value = Int(parts[1]) {
                values[String(parts[0].dropLast())] = value
            }
        }
        return values
    }
}
