import Foundation
import PostgresClient
import TestBed
import TestWaiting
import Testing

@testable import PoWACollector

/// The snapshot times of servers, read together from the repository until each has `count`
/// after `start` (or `timeout` passes): every snapshot is seen, as `snapts` changes far less
/// often than it is read.
private func snapshotTimes(
    of servers: [Int], count: Int, repository: ScratchRepository, timeout: Duration
) async throws -> [Int: [Double]] {
    let connection = try await repository.connect()
    defer { connection.close() }
    var times: [Int: [Double]] = [:]
    let wanted = Set(servers.map(String.init))
    let complete = try await eventually(timeout: timeout, interval: .milliseconds(100)) {
        let rows = try await connection.query(
            "SELECT srvid::text, extract(epoch FROM snapts)::text FROM powa_snapshot_metas WHERE snapts > '-infinity'"
        ).rows
        for row in rows {
            guard let id = row[0], wanted.contains(id), let id = Int(id), let time = row[1].flatMap(Double.init) else {
                continue
            }
            if times[id]?.last != time { times[id, default: []].append(time) }
        }
        return servers.allSatisfy { (times[$0]?.count ?? 0) >= count }
    }
    if !complete { Issue.record("not every server snapshotted \(count) times: \(times.mapValues(\.count))") }
    return times
}

/// The repository's clock now, in seconds since the epoch (what `snapts` is measured on).
private func repositoryClock(_ repository: ScratchRepository) async throws -> Double {
    Double(try await repository.value("SELECT extract(epoch FROM clock_timestamp())::text") ?? "") ?? 0
}

/// Ends the backends still running a hung source on the bed's remotes.
private func endHungSources(on bed: TestBed) async throws {
    for port in bed.remotePorts {
        let remote = try await bed.connect(port: port, database: "postgres")
        try await remote.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%hung_src%' AND pid <> pg_backend_pid()")
        remote.close()
    }
}

/// Remotes that stop answering together must not starve the healthy servers of the
/// repository's snapshot slots (a rack cut off, a partition).
@Suite("Starvation", .serialized, .timeLimit(.minutes(5)))
struct StarvationTests {
    /// The remotes listen on 0.0.0.0, reachable as 127.0.0.x, so that many servers can share
    /// them; COPY statements carry their srvid, and are not tracked as statements.
    static let bedSettings = [
        "POWA_TESTBED_LISTEN": "0.0.0.0",
        "POWA_TESTBED_REMOTE_CONF": "pg_stat_statements.track_utility = off",
    ]

    @Test("four remotes frozen from their first snapshot: three healthy servers keep every gap within frequency + 1 s")
    func frozenRemotes() async throws {
        try await TestBed.withPrivate(name: "starving", port: 5425, remotes: 2, kind: .powa4, settings: Self.bedSettings) {
            bed in
            let repository = try await ScratchRepository.create(on: bed)
            // Two remotes whose source hangs (the COPY never sends a row), two whose network
            // stops forwarding once their worker has its session: four at once, as many as the
            // regular slots.
            var hung: [Int] = []
            for host in ["127.0.0.1", "localhost"] {
                let server = try await repository.register(
                    port: bed.remotePorts[0], hostname: host, alias: "hung-\(host)", frequency: 5)
                try await addSlowSource(
                    repository: repository, serverID: server, remotePort: bed.remotePorts[0], seconds: 120,
                    name: "hung_src")
                hung.append(server)
            }
            let proxies = try (0..<2).map { _ in try FaultProxy(targetPort: bed.remotePorts[0]) }
            defer { proxies.forEach { $0.close() } }
            for (index, proxy) in proxies.enumerated() {
                hung.append(try await repository.register(port: proxy.port, alias: "frozen-\(index)", frequency: 5))
            }
            var healthy: [Int] = []
            for host in ["127.0.0.1", "localhost", bed.socketDirectory] {
                healthy.append(
                    try await repository.register(
                        port: bed.remotePorts[1], hostname: host, alias: "healthy-\(healthy.count)", frequency: 5))
            }
            let start = try await repositoryClock(repository)
            let running = RunningCollector(repository: repository) {
                $0.snapshotTimeout = 30
                $0.useServerAlias = true
            }
            // The frozen ones: their sessions open and their versions recorded, then silence.
            let versioned = try await eventually {
                try await repository.int(
                    "SELECT count(*) FROM powa_servers WHERE alias LIKE 'frozen-%' AND version IS NOT NULL") == 2
            }
            #expect(versioned)
            proxies.forEach { $0.stall() }
            let times = try await snapshotTimes(of: healthy, count: 8, repository: repository, timeout: .seconds(90))
            try await running.stop()
            try await endHungSources(on: bed)
            for server in healthy {
                let series = [start] + (times[server] ?? [])
                let gaps = zip(series, series.dropFirst()).map { $1 - $0 }
                // Without lanes for silent remotes: 22-30 s while the hung snapshots hold every
                // slot until snapshot_timeout.
                #expect(gaps.count >= 8 && gaps.allSatisfy { $0 <= 5 + 1 }, "server \(server): \(gaps)")
            }
        }
    }

    @Test("50 hung remotes and 200 healthy ones, 4 slots: no healthy server misses a period, repository sessions bounded")
    func hungRack() async throws {
        try await TestBed.withPrivate(name: "starving", port: 5425, remotes: 2, kind: .powa4, settings: Self.bedSettings) {
            bed in
            let repository = try await ScratchRepository.create(on: bed)
            let frequency = 15
            // Server i is 127.0.0.(i + 1) on the first remote for the hung ones and the first
            // 75 healthy ones, on the second remote for the other healthy ones.
            let layout = (0..<250).map { index -> (host: String, port: Int) in
                index < 125
                    ? ("127.0.0.\(index + 1)", bed.remotePorts[0]) : ("127.0.0.\(index - 124)", bed.remotePorts[1])
            }
            try await repository.execute(
                layout.enumerated().map { index, server in
                    "SELECT powa_register_server(hostname => '\(server.host)', port => \(server.port), alias => 's\(index)', dbname => 'powa', username => 'postgres', frequency => \(frequency), extensions => '{}');"
                }.joined(separator: "\n"))
            let ids = try await repository.connect()
            let idByAlias = Dictionary(
                uniqueKeysWithValues: try await ids.query("SELECT alias, id FROM powa_servers WHERE id > 0").rows.map {
                    ($0[0] ?? "", Int($0[1] ?? "") ?? 0)
                })
            ids.close()
            let hung = (0..<50).compactMap { idByAlias["s\($0)"] }
            let healthy = (50..<250).compactMap { idByAlias["s\($0)"] }
            #expect(hung.count == 50 && healthy.count == 200)
            try await addSlowSource(
                repository: repository, serverID: hung[0], remotePort: bed.remotePorts[0], seconds: 120, name: "hung_src")
            for server in hung.dropFirst() {
                try await repository.addSource(
                    serverID: server, module: "hung_src", querySource: "hung_src", snapshotFunction: "hung_src_snapshot")
            }

            let bound = SnapshotSlots(permits: 4).sessionBound
            let sessions = Task {
                // The most worker sessions on the repository at any one time, read every 50 ms.
                let observer = try await repository.connect()
                defer { observer.close() }
                var most = 0
                while !Task.isCancelled {
                    let now: Int
                    do {
                        now = try await observer.query(
                            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'PoWA collector - repo_conn for worker%'"
                        ).rows[0].decode(0, as: Int.self)
                    } catch  where Task.isCancelled {
                        break  // told to stop in the middle of a reading: the readings so far stand
                    }
                    most = max(most, now)
                    try? await Task.sleep(for: .milliseconds(50))
                }
                return most
            }
            let start = try await repositoryClock(repository)
            let running = RunningCollector(repository: repository) {
                $0.maxConcurrentSnapshots = 4
                $0.snapshotTimeout = 10
                $0.connectTimeout = 10
            }
            let times = try await snapshotTimes(of: healthy, count: 4, repository: repository, timeout: .seconds(150))
            try await running.stop()
            sessions.cancel()
            let most = try await sessions.value
            try await endHungSources(on: bed)
            #expect(most <= bound, "at most \(bound) repository sessions take snapshots; seen \(most)")
            #expect(most >= 1)
            var late: [String] = []
            for server in healthy {
                let series = [start] + (times[server] ?? [])
                let gaps = zip(series, series.dropFirst()).map { $1 - $0 }
                // Every period has its snapshot: the first within a period of the start (its
                // random phase) and a little; each next one within the period and a little.
                if gaps.count < 4 || gaps.contains(where: { $0 > Double(frequency) + 3 }) { late.append("\(server): \(gaps)") }
            }
            #expect(late.isEmpty, "\(late.count) servers missed a period: \(late.prefix(5))")
        }
    }

    @Test("PoWA 5: a remote that stops accepting sessions mid-snapshot leaves the only regular slot to a healthy server")
    func databaseSessionsRefused() async throws {
        try await TestBed.withPrivate(name: "starving", port: 5425, remotes: 2, kind: .powa5, settings: Self.bedSettings) {
            bed in
            let repository = try await ScratchRepository.create(on: bed)
            let proxy = try FaultProxy(targetPort: bed.remotePorts[0])
            defer { proxy.close() }
            let cut = try await repository.register(port: proxy.port, alias: "cut", frequency: 5)
            let healthy = try await repository.register(port: bed.remotePorts[1], alias: "healthy", frequency: 5)
            let running = RunningCollector(repository: repository) {
                $0.maxConcurrentSnapshots = 1
                $0.snapshotTimeout = 30
                $0.connectTimeout = 20
            }
            // Its first snapshot landed over the proxy; then the sessions of its next snapshot's
            // databases never connect, while its own session goes on.
            _ = try await repository.waitForSnapshots(cut, count: 1)
            _ = try await repository.waitForSnapshots(healthy, count: 1)
            proxy.stallNewConnections()
            let before = try #require(try await repository.snapts(healthy))
            let times = try await repository.waitForSnapshots(healthy, count: 4, after: before)
            try await running.stop()
            let series = [before] + times
            let gaps = zip(series, series.dropFirst()).map { $1 - $0 }
            // Without the silence limit on its databases' connects: about 20 s, the cut
            // snapshot holding the one regular slot while each database's connect times out.
            #expect(gaps.count == 4 && gaps.allSatisfy { $0 <= 5 + 1 }, "\(gaps)")
        }
    }
}
