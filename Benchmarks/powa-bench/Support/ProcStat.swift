import Foundation
import Glibc

/// The CPU fields of one process's `/proc/<pid>/stat` (Linux), in seconds.
///
/// The kernel keeps four CPU counters per process, in clock ticks (`sysconf(_SC_CLK_TCK)`):
/// utime and stime, the time of every thread of the process, and cutime and cstime, the time
/// of the children it waited for (reaped), their own reaped children included. What a process
/// and everything it ever started cost is therefore its four counters plus the utime + stime +
/// cutime + cstime of its children still alive (or exited and not yet reaped: a zombie keeps
/// its counters until then).
struct ProcStat: Sendable {
    let pid: pid_t
    let parent: pid_t
    let user: Double
    let system: Double
    let childrenUser: Double
    let childrenSystem: Double

    /// utime + stime: the process itself, all its threads.
    var ownSeconds: Double { user + system }
    /// cutime + cstime: its reaped children.
    var reapedChildrenSeconds: Double { childrenUser + childrenSystem }
    /// Everything: the process and its reaped children.
    var totalSeconds: Double { ownSeconds + reapedChildrenSeconds }

    /// nil when the process is gone (or the file unreadable).
    static func read(pid: pid_t) -> ProcStat? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return nil }
        return parse(stat, pid: pid)
    }

    /// The fields of a stat line. The command name is in parentheses and may hold spaces or
    /// parentheses: fields are counted after the last ")". After it come state (field 3), ppid
    /// (4), ... utime (14), stime (15), cutime (16), cstime (17).
    static func parse(_ stat: String, pid: pid_t) -> ProcStat? {
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        func field(_ number: Int) -> Substring? { fields.count > number - 3 ? fields[number - 3] : nil }
        guard let parent = field(4).flatMap({ pid_t($0) }),
            let utime = field(14).flatMap({ Double($0) }), let stime = field(15).flatMap({ Double($0) }),
            let cutime = field(16).flatMap({ Double($0) }), let cstime = field(17).flatMap({ Double($0) })
        else { return nil }
        return ProcStat(
            pid: pid, parent: parent, user: utime / clockTicks, system: stime / clockTicks,
            childrenUser: cutime / clockTicks, childrenSystem: cstime / clockTicks)
    }

    /// Clock ticks per second of the counters (100 on Linux).
    static let clockTicks = Double(sysconf(Int32(_SC_CLK_TCK)))

    /// The pids of every process now (thread group leaders: threads are under
    /// /proc/<pid>/task and their time is in their process's).
    static func allPIDs() -> [pid_t] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { pid_t($0) }
    }
}
