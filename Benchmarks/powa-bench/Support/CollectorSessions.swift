import Foundation
import PostgresClient
import TestBed

/// The sessions a collector holds on the clusters of a bed, from `pg_stat_activity`: every
/// session it opens is named `PoWA collector - ...` (its `ApplicationName`), the repository's
/// (control channel, pooled snapshot sessions) as the remotes' (one per worker).
///
/// Some of its sessions live for milliseconds: the answer to a RELOAD (`control reply`, left
/// out by name) and the session a reload reads the server list on (named like the control
/// channel's). A count is therefore the least of a few readings a fraction of a second apart:
/// a session that stays, the kind a leak keeps, is in every reading.
enum CollectorSessions {
    static let pattern = "PoWA collector - %"
    static let transient = "PoWA collector - control reply"
    static let controlChannel = "PoWA collector - main thread%"

    /// The collector's sessions on each cluster at `ports` (in that order).
    static func count(bed: TestBed, ports: [Int], readings: Int = 3, interval: Duration = .milliseconds(300))
        async throws -> [Int]
    {
        var connections: [PostgresConnection] = []
        defer { connections.forEach { $0.close() } }
        for port in ports {
            connections.append(try await BenchBed.connect(bed.connectionString(port: port, database: "postgres")))
        }
        var least = [Int](repeating: .max, count: ports.count)
        for reading in 0..<readings {
            if reading > 0 { try await Task.sleep(for: interval) }
            for (index, connection) in connections.enumerated() {
                let count = try await connection.query(
                    """
                    SELECT count(*) FROM pg_catalog.pg_stat_activity
                    WHERE application_name LIKE $1 AND application_name <> $2
                    """, [pattern, transient]
                ).rows[0].decode(0, as: Int.self)
                least[index] = min(least[index], count)
            }
        }
        return least
    }

    /// Whether the collector's control channel is connected to the repository (once per
    /// reading: the reload's short session has the same name, which is harmless here).
    static func controlChannelConnected(bed: TestBed) async -> Bool {
        guard
            let connection = try? await BenchBed.connect(
                bed.connectionString(port: bed.repositoryPort, database: "postgres"))
        else { return false }
        defer { connection.close() }
        let rows = try? await connection.query(
            "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE application_name LIKE $1", [controlChannel]
        ).rows
        return (try? rows?.first?.decode(0, as: Int.self)) ?? 0 > 0
    }
}
