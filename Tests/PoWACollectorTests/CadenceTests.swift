import PoWACollector
import TestBed
import Testing

/// The schedule as the collector keeps it against real servers: the cadence, and the phase
/// across a restart.
@Suite("Snapshot cadence", .timeLimit(.minutes(4)))
struct CadenceTests {
    @Test("at frequency 5 for 40 s, consecutive snapts are 5 s apart within 0.3 s")
    func cadence() async throws {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(port: bed.remotePorts[0])
        let collector = RunningCollector(repository: repository)
        let first = try #require(try await repository.waitForSnapshots(server, count: 1).first)
        let times = try await repository.waitForSnapshots(server, count: 8, after: first, timeout: .seconds(60))
        try await collector.stop()
        #expect(times.count == 8)
        let all = [first] + times
        #expect(all.last! - all.first! >= 40 - 0.3 * 8)
        for (earlier, later) in zip(all, all.dropFirst()) {
            #expect(abs(later - earlier - 5) <= 0.3, "gap \(later - earlier)")
        }
    }

    @Test("a restarted collector keeps the phase of a recent snapts")
    func restartKeepsPhase() async throws {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(port: bed.remotePorts[1], frequency: 5)
        let before = RunningCollector(repository: repository)
        let last = try #require(try await repository.waitForSnapshots(server, count: 2).last)
        try await before.stop()

        let after = RunningCollector(repository: repository)
        let next = try #require(try await repository.waitForSnapshots(server, count: 1, after: last).first)
        try await after.stop()
        #expect(abs(next - last - 5) <= 0.3, "the restarted collector snapshotted \(next - last) s after the last one")
    }

    @Test("a collector started when a snapshot is overdue, but less than two periods, takes it within 5 s")
    func lateSnapshotRunsAtOnce() async throws {
        let bed = try await TestBed.shared()
        let repository = try await ScratchRepository.create(on: bed)
        var servers: [Int] = []
        for hostname in ["127.0.0.1", "localhost"] {
            for port in bed.remotePorts {
                servers.append(try await repository.register(port: port, hostname: hostname, frequency: 20))
            }
        }
        // As a hand-over or a short restart leaves them: last snapshot 25 s ago, due 5 s ago.
        try await repository.execute("UPDATE powa_snapshot_metas SET snapts = now() - interval '25 s'")
        let staged = try #require(try await repository.snapts(servers[0]))
        let collector = RunningCollector(repository: repository)
        var delays: [Double] = []
        for server in servers {
            let next = try await repository.waitForSnapshots(server, count: 1, after: staged, timeout: .seconds(30))
            delays.append((next.first ?? .infinity) - staged - 25)
        }
        try await collector.stop()
        // The window is 5 s from the worker's start, which takes a little on a loaded machine;
        // a random phase would put each anywhere in the next 20 s.
        #expect(delays.allSatisfy { $0 <= 5 + 3 }, "seconds after the collector started: \(delays)")
    }
}
