import Foundation
import PoWACollector
import PostgresClient
import TestBed
import Testing

/// Connections blackholed by the network (a `FaultProxy` in front of a server): both ends
/// believe them open and nothing moves, the failure no error message announces.
@Suite("Blackholed connections", .timeLimit(.minutes(3)))
struct FaultTests {
    @Test(
        "a remote blackholed mid-snapshot: abandoned at the snapshot timeout, the other servers on schedule, snapshots again once it heals"
    )
    func blackholedRemote() async throws {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        let proxy = try FaultProxy(targetPort: bed.remotePorts[0])
        defer { proxy.close() }
        let tag = UInt32.random(in: 0...UInt32.max)
        let blackholed = try await repository.register(port: proxy.port, alias: "blackholed-\(tag)")
        try await addSlowSource(
            repository: repository, serverID: blackholed, remotePort: bed.remotePorts[0], seconds: 2,
            name: "blackhole_src")
        let healthy = [
            try await repository.register(port: bed.remotePorts[0], alias: "healthy-a-\(tag)"),
            try await repository.register(port: bed.remotePorts[1], alias: "healthy-b-\(tag)"),
        ]
        let running = RunningCollector(repository: repository) {
            $0.snapshotTimeout = 5
            $0.connectTimeout = 2
        }
        _ = try await repository.waitForSnapshots(blackholed, count: 1)

        // Mid-snapshot: the next snapshot's slow source runs on the remote when the network
        // drops everything.
        try await waitForActiveQuery(bed: bed, port: bed.remotePorts[0], like: "%blackhole_src%")
        proxy.stall()
        let stalled = ContinuousClock.now
        let frozen = try await repository.snapts(blackholed)
        let errors = try await repository.waitForErrors(blackholed, containing: "snapshot timed out")
        let abandonedAfter = ContinuousClock.now - stalled
        #expect(errors.contains("blackhole_src"), "\(errors)")
        // At the snapshot's 5 s timeout, counted from its start, shortly before the stall, and
        // the 2 s grace of the cancel request that gets no answer.
        #expect(abandonedAfter > .seconds(2) && abandonedAfter < .seconds(9), "\(abandonedAfter)")

        // Meanwhile, and while the remote stays unreachable, the other servers keep their cadence.
        for server in healthy {
            let times = try await repository.waitForSnapshots(server, count: 3)
            for gap in zip(times, times.dropFirst()).map({ $1 - $0 }) {
                #expect(gap > 4 && gap < 6.5, "server \(server): a gap of \(gap) s while a remote is blackholed")
            }
        }
        #expect(try await repository.snapts(blackholed) == frozen)
        #expect(running.logs.lines.contains { $0.contains("could not connect to the remote server") })

        proxy.heal()
        let healed = ContinuousClock.now
        _ = try await repository.waitForSnapshots(blackholed, count: 1, after: frozen, timeout: .seconds(60))
        // The worker's backoff (doubling up to 30 s while the outage lasts), a connect, a
        // snapshot; no reload needed.
        #expect(ContinuousClock.now - healed < .seconds(45))
        try await running.stop()
    }

    @Test(
        "the repository blackholed: the collector notices within its liveness check, and the control channel and snapshots come back once it heals"
    )
    func blackholedRepository() async throws {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(port: bed.remotePorts[0])
        let proxy = try FaultProxy(targetPort: bed.repositoryPort)
        defer { proxy.close() }
        var configuration = CollectorConfiguration(
            repositoryDSN: bed.connectionString(port: proxy.port, database: repository.database))
        configuration.connectTimeout = 2
        configuration.snapshotTimeout = 5
        let running = RunningCollector(configuration)
        // powa-web reaches the repository directly.
        let client = try await ControlClient.connect(repository)
        defer { client.close() }
        let listed = "WORKERS_STATUS OK {\"\(server)\": \"running\"}"
        #expect(try await client.waitForStatus { $0 == listed } == listed)
        _ = try await repository.waitForSnapshots(server, count: 1)

        proxy.stall()
        let stalled = ContinuousClock.now
        #expect(try await client.ask("WORKERS_STATUS blackholed", channel: "blackholed", timeout: .seconds(2)) == nil)
        // The control session's liveness check: 10 s of silence, then SELECT 1 within 2 s.
        #expect(try await running.waitForLog("control channel: connection to the repository lost", timeout: .seconds(25)))
        #expect(ContinuousClock.now - stalled < .seconds(16))
        let frozen = try await repository.snapts(server)

        proxy.heal()
        let healed = ContinuousClock.now
        #expect(try await client.waitForStatus({ $0 == listed }, timeout: .seconds(20)) == listed)
        // The control channel's backoff (at most 5 s), a connect.
        #expect(ContinuousClock.now - healed < .seconds(10))
        _ = try await repository.waitForSnapshots(server, count: 1, after: frozen, timeout: .seconds(30))
        #expect(ContinuousClock.now - healed < .seconds(20))
        let stopping = ContinuousClock.now
        try await running.stop()
        #expect(ContinuousClock.now - stopping < .seconds(5))
    }
}
