import Foundation
import PoWACollector
import PostgresClient
import TestBed
import TestWaiting
import Testing

@Suite("Control protocol", .timeLimit(.minutes(4)))
struct ControlTests {
    @Test("each command answers as the protocol says", arguments: PoWAMajor.allCases)
    func commands(major: PoWAMajor) async throws {
        let bed = try await TestBed.shared(major)
        let repository = try await ScratchRepository.create(on: bed)
        let first = try await repository.register(port: bed.remotePorts[0], frequency: 3600)
        let second = try await repository.register(port: bed.remotePorts[1], frequency: 3600)
        // No snapshot for an hour: the first ones come from FORCE_SNAPSHOT.
        try await repository.execute("UPDATE powa_snapshot_metas SET snapts = now() WHERE srvid > 0")
        let running = RunningCollector(repository: repository)
        let client = try await ControlClient.connect(repository)
        defer { client.close() }

        let all = try await client.waitForStatus {
            $0.contains("\"\(second)\": \"running\"") && $0.contains("\"\(first)\": \"running\"")
        }
        #expect(all == "WORKERS_STATUS OK {\"\(first)\": \"running\", \"\(second)\": \"running\"}")
        #expect(
            try await client.ask("WORKERS_STATUS r1 \(first)", channel: "r1") == "WORKERS_STATUS OK {\"\(first)\": \"running\"}")
        #expect(try await client.ask("WORKERS_STATUS r1 999999", channel: "r1") == "WORKERS_STATUS OK {}")
        #expect(try await client.ask("WORKERS_STATUS r1 abc", channel: "r1") == "WORKERS_STATUS ERROR invalid remote server id")

        // FORCE_SNAPSHOT: accepted, then refused while it runs or as too soon.
        let forced = ContinuousClock.now
        #expect(
            try await client.ask("FORCE_SNAPSHOT r2 \(first)", channel: "r2") == "FORCE_SNAPSHOT OK Snapshot will begin shortly")
        let refused = try #require(try await client.ask("FORCE_SNAPSHOT r2 \(first)", channel: "r2"))
        #expect(refused.hasPrefix("FORCE_SNAPSHOT ERROR "))
        let landed = try await repository.waitForSnapshots(first, count: 1)
        if landed.isEmpty {
            // What became of it, for whoever reads the failure.
            let errors = try await repository.errors(first)
            let problems = running.logs.lines.filter { $0.hasPrefix("error") || $0.hasPrefix("warning") }
            Issue.record(
                "the forced snapshot did not land: errors \(errors); log: \(problems.suffix(5).joined(separator: " // "))")
        }
        // Its commit shows before its worker has run the cleanups, and a scheduled snapshot may
        // start meanwhile: until those end, the answer is that one is in progress.
        var answer: String?
        var asked = ContinuousClock.now
        _ = try await eventually(timeout: .seconds(8), interval: .milliseconds(50)) {
            asked = .now
            answer = try await client.ask("FORCE_SNAPSHOT r2 \(first)", channel: "r2")
            return answer != "FORCE_SNAPSHOT ERROR A snapshot is already in progress"
        }
        // (A snapshot slowed down past 10 s by a loaded machine may be forced again.)
        if asked - forced < .seconds(9) {
            #expect(answer == "FORCE_SNAPSHOT ERROR Last snapshot was less than 10s. ago")
        }
        #expect(try await client.ask("FORCE_SNAPSHOT r2 4242", channel: "r2") == "FORCE_SNAPSHOT ERROR Server id 4242 not found")
        #expect(
            try await client.ask("FORCE_SNAPSHOT r2", channel: "r2")
                == "FORCE_SNAPSHOT ERROR Command \"FORCE_SNAPSHOT\" malformed")
        #expect(
            try await client.ask("FORCE_SNAPSHOT r2 1 2", channel: "r2")
                == "FORCE_SNAPSHOT ERROR Command \"FORCE_SNAPSHOT\" malformed")
        #expect(
            try await client.ask("FORCE_SNAPSHOT r2 99999999999999999999", channel: "r2")
                == "FORCE_SNAPSHOT ERROR invalid remote server id")

        // Unknown commands, an empty payload, a channel that needs quoting.
        #expect(try await client.ask("BOGUS r3 1", channel: "r3") == "BOGUS UNKNOWN Message \"BOGUS\" invalid, command ignored")
        try await client.send("")
        let odd = "Mixed\"Case;'--"
        #expect(
            try await client.ask("WORKERS_STATUS \(odd) \(second)", channel: odd)
                == "WORKERS_STATUS OK {\"\(second)\": \"running\"}")

        // RELOAD answers OK, and reloads even without a channel.
        #expect(try await client.ask("RELOAD r4 ", channel: "r4") == "RELOAD OK OK")
        let reloads = running.logs.lines.filter { $0.contains("configuration reloaded") }.count
        try await client.send("RELOAD")
        #expect(try await running.waitForLog(count: reloads + 1, of: "configuration reloaded"))
        try await running.stop()
    }

    @Test(
        "a role that may not signal backends gets ERROR Permission denied, and nothing happens",
        arguments: PoWAMajor.allCases)
    func permission(major: PoWAMajor) async throws {
        let bed = try await TestBed.shared(major)
        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(port: bed.remotePorts[0], frequency: 3600)
        try await repository.execute("UPDATE powa_snapshot_metas SET snapts = now() - interval '1 minute' WHERE srvid > 0")
        let before = try await repository.snapts(server)
        let suffix = UInt32.random(in: 0...UInt32.max)
        let weak = "powa_weak_\(suffix)", signaller = "powa_signal_\(suffix)"
        // PoWA 5 also allows the roles powa_roles maps to powa_signal_backend, powa_write_all_data
        // and powa_admin (CREATE EXTENSION powa made them); PoWA 4 knows pg_signal_backend only.
        let grantor = major == .five ? "powa_signal_backend" : "pg_signal_backend"
        if major == .five {
            // Only the first database of a cluster where powa is created gets the mapping (the
            // roles exist already for the others): map them as an administrator would.
            try await repository.execute("UPDATE powa_roles SET rolname = powa_role WHERE rolname IS NULL")
        }
        try await repository.execute(
            "CREATE ROLE \(weak) LOGIN; CREATE ROLE \(signaller) LOGIN IN ROLE \(grantor)")
        let running = RunningCollector(repository: repository)
        let admin = try await ControlClient.connect(repository)
        defer { admin.close() }
        _ = try await admin.waitForStatus { $0.contains("running") }

        let weakClient = ControlClient(
            connection: try await PostgresConnection.connect(
                .init(connectionString: bed.connectionString(port: bed.repositoryPort, database: repository.database, user: weak))
            ))
        defer { weakClient.close() }
        #expect(
            try await weakClient.ask("FORCE_SNAPSHOT w1 \(server)", channel: "w1") == "FORCE_SNAPSHOT ERROR Permission denied")
        #expect(try await weakClient.ask("RELOAD w1", channel: "w1") == "RELOAD ERROR Permission denied")
        #expect(try await weakClient.ask("WORKERS_STATUS w1", channel: "w1") == "WORKERS_STATUS ERROR Permission denied")
        // Nothing of them happens: no snapshot, no reload, within a second. The answers came,
        // so the channel handled them: an obeyed RELOAD logs "configuration reloaded" first
        // thing, and an obeyed FORCE_SNAPSHOT wakes the worker at once, for a snapshot of an
        // idle local remote (tenths of a second). The second bounds both.
        let obeyed = try await eventually(timeout: .seconds(1)) {
            try await repository.snapts(server) != before || running.logs.lines.contains { $0.contains("configuration reloaded") }
        }
        #expect(!obeyed)

        let allowed = ControlClient(
            connection: try await PostgresConnection.connect(
                .init(
                    connectionString: bed.connectionString(
                        port: bed.repositoryPort, database: repository.database, user: signaller))))
        defer { allowed.close() }
        let answer = try await allowed.ask("FORCE_SNAPSHOT s1 \(server)", channel: "s1")
        #expect(answer == "FORCE_SNAPSHOT OK Snapshot will begin shortly")
        _ = try await repository.waitForSnapshots(server, count: 1)
        try await running.stop()
    }

    @Test(
        "10,000 random and hostile payloads: the daemon stays up and still answers correctly",
        arguments: PoWAMajor.allCases)
    func hostilePayloads(major: PoWAMajor) async throws {
        let bed = try await TestBed.shared(major)
        let repository = try await ScratchRepository.create(on: bed)
        let server = try await repository.register(port: bed.remotePorts[1], frequency: 3600)
        let running = RunningCollector(repository: repository)
        let client = try await ControlClient.connect(repository)
        defer { client.close() }
        _ = try await client.waitForStatus { $0.contains("running") }

        var generator = SystemRandomNumberGenerator()
        let fixed = [
            "", " ", String(repeating: " ", count: 500), "-", "- -", "WORKERS_STATUS -", "WORKERS_STATUS - 1",
            "FORCE_SNAPSHOT - 99999999999999999999999999", "WORKERS_STATUS x 1 2 3 4",
            "WORKERS_STATUS '; DROP TABLE powa_servers; --", "WORKERS_STATUS \"x\"\"y\" 1", "RELOAD;",
            "FORCE_SNAPSHOT r -1", "FORCE_SNAPSHOT r 0x10", "WORKERS_STATUS " + String(repeating: "c", count: 300),
            String(repeating: "A", count: 7_990), "WORKERS_STATUS r " + String(repeating: "9", count: 7_900),
            "\\", "\\\\ \\' \\\"", "WORKERS_STATUS r\u{0} 1".replacingOccurrences(of: "\u{0}", with: ""),
            "ÉCHO ☃ 日本 🎉", "FORCE_SNAPSHOT;SELECT pg_sleep(10) x", "REFRESH_DB_CAT r", "REFRESH_DB_CAT r 1 x",
            "REFRESH_DB_CAT r x 0", "REFRESH_DB_CAT r 1 3 a b", "REFRESH_DB_CAT - 99999999999 0",
        ]
        let alphabet = Array("abcXYZ019 -_;'\"\\$%(){}[]é☃🎉\t")
        let commands = ["WORKERS_STATUS", "FORCE_SNAPSHOT", "REFRESH_DB_CAT", "UNKNOWN", "workers_status", "X"]
        for index in 0..<10_000 {
            let payload: String
            if index < fixed.count {
                payload = fixed[index]
            } else if index % 3 == 0 {
                let length = Int.random(in: 0...200, using: &generator)
                payload = String((0..<length).map { _ in alphabet.randomElement(using: &generator)! })
            } else {
                let command = commands.randomElement(using: &generator)!
                let argument = ["", "\(Int.random(in: -5...99_999_999, using: &generator))", "'", ";", "- -"]
                    .randomElement(using: &generator)!
                payload = "\(command) q\(index % 7) \(argument)"
            }
            try await client.send(payload)
        }
        let answer = try await client.waitForStatus(
            { $0.hasPrefix("WORKERS_STATUS OK") }, channel: "final", timeout: .seconds(120))
        #expect(answer == "WORKERS_STATUS OK {\"\(server)\": \"running\"}")
        #expect(running.collector.board.statuses()[server] == .running)
        try await running.stop()
    }
}
