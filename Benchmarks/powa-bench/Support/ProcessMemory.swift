import Foundation

/// Memory figures of a process, from `/proc/<pid>/status` (Linux), in kB as the kernel reports
/// them (1 kB = 1024 bytes).
struct ProcessMemory: Sendable {
    /// VmRSS: the resident set now.
    let residentKB: Int
    /// VmHWM: the peak resident set since the process started.
    let peakResidentKB: Int
    /// RssAnon: the resident anonymous memory now (heap, stacks: what the process allocated).
    let anonymousKB: Int
    /// RssFile: the resident file-backed pages now (mostly shared libraries' code and data).
    let fileKB: Int

    /// This process's figures.
    static func current() throws -> ProcessMemory {
        try read(statusPath: "/proc/self/status")
    }

    static func read(statusPath: String) throws -> ProcessMemory {
        let text = try String(contentsOfFile: statusPath, encoding: .utf8)
        var fields: [String: Int] = [:]
        for line in text.split(separator: "\n")
        where line.hasPrefix("VmRSS:") || line.hasPrefix("VmHWM:") || line.hasPrefix("Rss") {
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if parts.count >= 2, let value = Int(parts[1]) { fields[String(parts[0].dropLast())] = value }
        }
        guard let rss = fields["VmRSS"], let hwm = fields["VmHWM"], let anonymous = fields["RssAnon"],
            let file = fields["RssFile"]
        else {
            throw BenchError("no VmRSS/VmHWM/RssAnon/RssFile in \(statusPath)")
        }
        return ProcessMemory(residentKB: rss, peakResidentKB: hwm, anonymousKB: anonymous, fileKB: file)
    }
}

/// kB (as in /proc) as MB, 1 MB = 1024 kB.
func megabytes(_ kilobytes: Int) -> Double { Double(kilobytes) / 1024 }
