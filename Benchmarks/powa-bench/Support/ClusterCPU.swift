import Foundation
import Glibc

/// The CPU time a PostgreSQL cluster has spent so far: its postmaster and every process it
/// started (backends, parallel and background workers, autovacuum, checkpointer, ...), alive
/// or gone. The difference of two readings is what the cluster spent in between: for the
/// repository, what the snapshots a collector sends cost the server that stores them, which
/// the collector's own CPU says nothing of.
///
/// Backends come and go (the Python collector opens a repository connection per snapshot): a
/// backend that exited and was reaped is in the postmaster's cutime + cstime, one alive is
/// read from its own /proc/<pid>/stat (every process whose parent is the postmaster). A live
/// child counts with its own reaped children, so that when it exits its whole time moves into
/// the postmaster's counters, which grow by exactly that much (no jump). The postmaster is
/// found in `<datadir>/postmaster.pid` (first line).
struct ClusterCPU: Sendable {
    let postmaster: pid_t
    /// The postmaster's utime + stime + cutime + cstime, plus its live children's.
    let seconds: Double
    /// Of which its live children's own.
    let liveChildrenSeconds: Double
    let liveChildren: Int

    /// nil when the cluster is not running (no postmaster.pid, or its process is gone).
    static func read(dataDirectory: String) -> ClusterCPU? {
        guard let text = try? String(contentsOfFile: dataDirectory + "/postmaster.pid", encoding: .utf8),
            let line = text.split(separator: "\n").first, let postmaster = pid_t(line)
        else { return nil }
        // A child reaped while /proc is scanned would be missed (reaped after the postmaster
        // was read, gone before its own file was) or counted twice (the other way round): scan
        // again until the postmaster's counters are the same before and after the scan.
        var attempt = 0
        while true {
            guard let before = ProcStat.read(pid: postmaster) else { return nil }
            var children = 0.0
            var count = 0
            for pid in ProcStat.allPIDs() where pid != postmaster {
                guard let child = ProcStat.read(pid: pid), child.parent == postmaster else { continue }
                children += child.totalSeconds
                count += 1
            }
            guard let after = ProcStat.read(pid: postmaster) else { return nil }
            attempt += 1
            if after.reapedChildrenSeconds == before.reapedChildrenSeconds || attempt >= 5 {
                return ClusterCPU(
                    postmaster: postmaster, seconds: after.totalSeconds + children, liveChildrenSeconds: children,
                    liveChildren: count)
            }
        }
    }
}
