import Foundation

/// The bytes the remote clusters send, as the kernel counts them: a chain of the bench's in
/// iptables' OUTPUT path (loopback traffic goes through it), with one counting rule per remote
/// port. IP packets are counted, headers included, whoever the client: during a run, only the
/// collector measured talks to the remotes. Needs root and iptables: without them, the figure
/// is not measured (nil), and the rest of the benchmark runs as usual.
enum RemoteTraffic {
    static let chain = "POWA_BENCH_REMOTES"
    static let iptables = "/usr/sbin/iptables"

    /// Creates the chain (anew) with a rule per port; returns whether counting works.
    static func install(ports: [Int]) -> Bool {
        remove()
        guard run(["-N", chain]) else { return false }
        for port in ports {
            guard run(["-A", chain, "-p", "tcp", "--sport", "\(port)"]) else {
                remove()
                return false
            }
        }
        guard run(["-I", "OUTPUT", "-j", chain]) else {
            remove()
            return false
        }
        return bytes() != nil
    }

    /// Takes the chain out again (nothing if it is not there).
    static func remove() {
        while run(["-D", "OUTPUT", "-j", chain]) {}
        _ = run(["-F", chain])
        _ = run(["-X", chain])
    }

    /// The bytes counted so far over every port (nil: no chain).
    static func bytes() -> Int? {
        guard FileManager.default.isExecutableFile(atPath: iptables),
            let outcome = try? ChildProcess.runNow(iptables, ["-L", chain, "-n", "-v", "-x"]), outcome.succeeded
        else { return nil }
        // "Chain ...", the column titles, then a line per rule: pkts bytes ...
        return outcome.standardOutput.split(separator: "\n").dropFirst(2).reduce(0) { total, line in
            let fields = line.split(separator: " ")
            return total + (fields.count > 1 ? Int(fields[1]) ?? 0 : 0)
        }
    }

    private static func run(_ arguments: [String]) -> Bool {
        guard FileManager.default.isExecutableFile(atPath: iptables) else { return false }
        return (try? ChildProcess.runNow(iptables, ["-w"] + arguments))?.succeeded ?? false
    }
}
