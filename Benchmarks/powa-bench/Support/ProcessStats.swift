import Foundation
import Glibc
import TestBed

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
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        // The command name is in parentheses and may hold spaces: count fields after the last ")".
        guard let close = stat.lastIndex(of: ")") else { throw BenchError("unreadable /proc/\(pid)/stat") }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
        func ticks(_ field: Int) throws -> Double {
            guard fields.count > field - 3, let value = Double(fields[field - 3]) else {
                throw BenchError("no field \(field) in /proc/\(pid)/stat")
            }
            return value / clockTicks
        }
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let threads =
            status.split(separator: "\n").first { $0.hasPrefix("Threads:") }
            .flatMap { Int($0.split(whereSeparator: { $0 == " " || $0 == "\t" }).last ?? "") } ?? 0
        let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0
        return ProcessStats(
            cpu: ChildProcess.CPUTime(user: try ticks(14), system: try ticks(15)),
            childrenCPU: ChildProcess.CPUTime(user: try ticks(16), system: try ticks(17)),
            memory: try ProcessMemory.read(statusPath: "/proc/\(pid)/status"),
            threads: threads,
            openDescriptors: descriptors)
    }

    private static let clockTicks = Double(sysconf(Int32(_SC_CLK_TCK)))

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

/// CPU seconds spent by a PostgreSQL cluster so far: its postmaster, the children it reaped
/// (cutime + cstime: the backends of closed connections, autovacuum workers...) and its live
/// children. The difference of two samples is what the cluster spent in between.
enum ClusterCPU {
    static func sample(dataDirectory: String) -> Double {
        guard let text = try? String(contentsOfFile: dataDirectory + "/postmaster.pid", encoding: .utf8),
            let line = text.split(separator: "\n").first, let postmaster = pid_t(line)
        else { return 0 }
        var total = 0.0
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(entry), let fields = statFields(pid: pid) else { continue }
            // fields[0] is the state, [1] the ppid; utime..cstime are fields 14-17 (11-14 here).
            guard pid == postmaster || fields.count > 14 && pid_t(fields[1]) == postmaster else { continue }
            total += (11...14).reduce(0.0) { $0 + (Double(fields[$1]) ?? 0) } / clockTicks
        }
        return total
    }

    /// The fields of /proc/<pid>/stat after the command name (state first).
    static func statFields(pid: pid_t) -> [Substring]? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        return stat[stat.index(after: close)...].split(separator: " ")
    }

    private static let clockTicks = Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// The machine's busy CPU seconds so far (all CPUs, /proc/stat: everything but idle and
/// iowait), to tell how much else ran during a measurement.
enum MachineCPU {
    static func busySeconds() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") })
        else { return 0 }
        let values = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard values.count >= 5 else { return 0 }
        let total = values.prefix(8).reduce(0, +)
        return (total - values[3] - values[4]) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// CPU seconds of the bed's clusters and of the whole machine between two samples.
struct ServerUsage {
    var repository = 0.0
    var remotes = 0.0
    var machine = 0.0
    var seconds = 0.0

    struct Sample {
        let repository: Double
        let remotes: Double
        let machine: Double
        let instant: ContinuousClock.Instant
    }

    static func sample(_ bed: TestBed) -> Sample {
        Sample(
            repository: ClusterCPU.sample(dataDirectory: bed.repositoryDataDirectory),
            remotes: bed.remoteDataDirectories.reduce(0) { $0 + ClusterCPU.sample(dataDirectory: $1) },
            machine: MachineCPU.busySeconds(), instant: .now)
    }

    /// From `start` to now, once the measured process has stopped and its backends exited.
    static func since(_ start: Sample, _ bed: TestBed) async -> ServerUsage {
        try? await Task.sleep(for: .milliseconds(500))
        let end = sample(bed)
        return ServerUsage(
            repository: end.repository - start.repository, remotes: end.remotes - start.remotes,
            machine: end.machine - start.machine, seconds: (end.instant - start.instant).seconds)
    }
}
