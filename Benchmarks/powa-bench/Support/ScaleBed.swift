import ArgumentParser
import Foundation
import Glibc
import TestBed

/// The bed of `powa-bench scale` and `fleet`: S `powa_servers` rows pointing at a few remote
/// clusters through loopback addresses (server j is cluster j mod C at 127.0.0.(1 + j / C); the
/// clusters listen on 0.0.0.0 and trust 127.0.0.0/8), so that S persistent remote connections
/// and S schedules run against a handful of clusters.
enum ScaleBed {
    /// The bed for at most `servers` servers over `clusters` remote clusters (`powa-bench scale`'s
    /// and `fleet`'s by default: /tmp/powa-testbed-bench-scale, ports 5510 on).
    static func spec(servers: Int, clusters: Int, name: String = "bench-scale", port: Int = 5510) -> BedSpec {
        let perCluster = (servers + clusters - 1) / clusters
        return BedSpec(
            name: name, port: port, remotes: clusters,
            remoteConfiguration: [
                "max_connections = \(max(300, perCluster + 50))",
                // Each server's COPY statements carry its srvid: one entry per server and source
                // otherwise, and pg_stat_statements would evict all the time.
                "pg_stat_statements.track_utility = off",
            ],
            repositoryConfiguration: ["track_commit_timestamp = on"],
            listenAddresses: "0.0.0.0")
    }

    /// `count` servers spread over the remote clusters at `ports`, as described above.
    static func servers(_ count: Int, ports: [Int]) -> [RegisteredServer] {
        (0..<count).map { index in
            RegisteredServer(
                hostname: "127.0.0.\(1 + index / ports.count)", port: ports[index % ports.count], alias: "srv\(index + 1)")
        }
    }

    /// Whether `servers` servers fit on `clusters` clusters (127.0.0.1-254 each).
    static func validate(servers: [Int], clusters: Int) throws {
        guard (1...9).contains(clusters) else { throw ValidationError("--clusters must be from 1 to 9") }
        guard !servers.isEmpty, servers.allSatisfy({ $0 >= 1 }) else {
            throw ValidationError("--servers: one or more positive counts, comma-separated")
        }
        guard servers.allSatisfy({ $0 <= 254 * clusters }) else {
            throw ValidationError("--servers: at most \(254 * clusters) with \(clusters) cluster(s) (127.0.0.1-254 each)")
        }
    }

    /// Warns when a collector started from here could run out of descriptors with `servers`
    /// remote connections.
    static func checkDescriptorLimit(servers: Int) {
        var limits = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limits)
        let needed = servers + 100
        if limits.rlim_cur < needed {
            note("warning: the descriptor limit (\(limits.rlim_cur)) is under \(needed): the collector will run out")
        }
    }
}
