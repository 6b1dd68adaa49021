import Foundation
import Logging
import NIOCore
import NIOFileSystem
import PostgresClient
import Testing

@testable import PoWACollector

/// Spool files and the spool's bounds, on a temporary directory: no PostgreSQL.
@Suite("Spool files and bounds")
struct SpoolFileTests {
    private static func directory() -> String { "/tmp/powa-spool-unit-\(UInt64.random(in: 0...UInt64.max))" }

    private static func header(_ serverID: Int = 1) -> SpoolHeader {
        SpoolHeader(
            serverID: serverID, hostname: "db1", port: 5432, takenAt: 1000, serverVersionNumber: 150_000, baseMark: "12.5")
    }

    /// A file of two sections (one complete, one failed) and its path.
    private static func write(at path: String, data: [UInt8] = Array("1\t2\tselect\n".utf8)) async throws -> Int {
        let writer = try await SpoolWriter.create(at: FilePath(path), header: header())
        try await writer.beginSection(SpoolSection(kind: .source, name: "powa_statements_src", module: "powa"))
        try await writer.data(data)
        try await writer.data(data)
        try await writer.endSection(failed: false)
        try await writer.beginSection(SpoolSection(kind: .module, name: "pg_stat_all_tables", database: "app"))
        try await writer.data(data)
        try await writer.endSection(failed: true)
        return try await writer.finish(
            SpoolSummary(
                errors: ["pg_stat_all_tables in database app: boom"],
                elidedStatements: [StatementKey(userid: 10, dbid: 5, queryid: -7)]),
            directory: FilePath(path).removingLastComponent())
    }

    @Test("a file reads back as written: header, sections, data, summary; the failed section's data is not replayed")
    func roundTrip() async throws {
        let directory = Self.directory()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/1.snapshot"
        let size = try await Self.write(at: path)
        #expect(size == (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int))
        let reader = SpoolReader(path: FilePath(path))
        let contents = try await reader.verify()
        #expect(contents.header == Self.header())
        #expect(contents.sections.map(\.complete) == [true, false])
        #expect(contents.summary.errors == ["pg_stat_all_tables in database app: boom"])
        #expect(contents.summary.elidedStatements == [StatementKey(userid: 10, dbid: 5, queryid: -7)])
        var replayed: [String] = []
        try await reader.replay { record in
            switch record {
            case .section(let section, let index): replayed.append("\(index):\(section.name)")
            case .data(let chunk): replayed.append(String(buffer: chunk))
            case .sectionEnd: replayed.append("end")
            }
        }
        let row = "1\t2\tselect\n"
        #expect(replayed == ["0:powa_statements_src", row, row, "end", "1:pg_stat_all_tables", row, "end"])
    }

    @Test("a file cut anywhere, or with a byte changed, is damaged: it never reads as whole")
    func damaged() async throws {
        let directory = Self.directory()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/1.snapshot"
        _ = try await Self.write(at: path)
        let whole = try Data(contentsOf: URL(fileURLWithPath: path))
        for length in Set([0, 5, 30, whole.count / 2, whole.count - 9, whole.count - 1]) {
            try whole.prefix(length).write(to: URL(fileURLWithPath: path))
            await #expect(throws: SpoolDamage.self, "cut at \(length)") { try await SpoolReader(path: FilePath(path)).verify() }
        }
        var changed = whole
        changed[whole.count / 2] ^= 0x01
        try changed.write(to: URL(fileURLWithPath: path))
        await #expect(throws: SpoolDamage.self) { try await SpoolReader(path: FilePath(path)).verify() }
        try (whole + [0]).write(to: URL(fileURLWithPath: path))
        await #expect(throws: SpoolDamage.self) { try await SpoolReader(path: FilePath(path)).verify() }
    }

    @Test("a file discarded, or never finished, leaves nothing under its name")
    func discarded() async throws {
        let directory = Self.directory()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let writer = try await SpoolWriter.create(at: FilePath(directory + "/1.snapshot"), header: Self.header())
        try await writer.beginSection(SpoolSection(kind: .source, name: "powa_statements_src"))
        #expect(!FileManager.default.fileExists(atPath: directory + "/1.snapshot"))
        writer.discard()
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty)
    }

    @Test("past spool.max_bytes the oldest snapshots go, whatever their server, counted for each server's powa-web")
    func bounds() async throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var settings = SpoolSettings(directory: directory)
        let size = 1000
        settings.maxBytes = size * 3
        let spool = try await SnapshotSpool.open(settings, metrics: nil, logger: Logger(label: "test"))
        var files: [SnapshotSpool.File] = []
        for (index, server) in [1, 2, 1, 2, 1].enumerated() {
            let file = try await spool.newFile(serverID: server)
            try Data(count: size).write(to: URL(fileURLWithPath: file.path.string))
            let entry = SnapshotSpool.File(serverID: server, path: file.path, bytes: size, takenAt: file.takenAt)
            files.append(entry)
            await spool.spooled(entry)
            #expect(spool.contents.snapshots == min(index + 1, 3))
        }
        // The two oldest (one of each server) dropped: the three newest remain, in order.
        #expect(await spool.pending(serverID: 1) == [files[2], files[4]])
        #expect(await spool.pending(serverID: 2) == [files[3]])
        #expect(!FileManager.default.fileExists(atPath: files[0].path.string))
        #expect(
            SnapshotSpool.describe(spool.takeNotices(serverID: 1)) == [
                "1 snapshot taken while the repository was unreachable was dropped: spool full"
            ])
        #expect(SnapshotSpool.describe(spool.takeNotices(serverID: 1)) == [], "told once")
        #expect(SnapshotSpool.describe(spool.takeNotices(serverID: 2)).count == 1)
    }

    @Test("the spool is read again at start, spool.max_age drops what is too old, and one collector at a time uses a directory")
    func reopened() async throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var settings = SpoolSettings(directory: directory)
        var paths: [String] = []
        do {
            let spool = try await SnapshotSpool.open(settings, metrics: nil, logger: Logger(label: "test"))
            await #expect(throws: SpoolError.self) {
                _ = try await SnapshotSpool.open(settings, metrics: nil, logger: Logger(label: "test"))
            }
            for _ in 0..<2 {
                let file = try await spool.newFile(serverID: 3)
                _ = try await Self.write(at: file.path.string)
                paths.append(file.path.string)
            }
        }
        do {
            let again = try await SnapshotSpool.open(settings, metrics: nil, logger: Logger(label: "test"))
            #expect(await again.pending(serverID: 3).map(\.path.string) == paths)
        }
        // A file of 1970: past any max_age.
        let old = directory + "/3/00000000001000000000.snapshot"
        _ = try await Self.write(at: old)
        settings.maxAge = 3600
        let third = try await SnapshotSpool.open(settings, metrics: nil, logger: Logger(label: "test"))
        #expect(await third.pending(serverID: 3).map(\.path.string) == paths)
        #expect(!FileManager.default.fileExists(atPath: old))
        #expect(SnapshotSpool.describe(third.takeNotices(serverID: 3)).first?.hasSuffix("older than spool.max_age") == true)
    }

    @Test(
        "a landing that failed: kept while the repository is out, dropped when damaged, after 3 refusals, or (with the rest) when another collector landed since"
    )
    func landingDecisions() {
        #expect(SpoolLandingDecision.after(.outage, attempts: 9) == .keepAndSpool)
        #expect(SpoolLandingDecision.after(.damaged, attempts: 1) == .drop(.damaged))
        #expect(SpoolLandingDecision.after(.landedElsewhere, attempts: 1) == .dropRest)
        #expect(SpoolLandingDecision.after(.superseded, attempts: 1) == .stop)
        #expect(SpoolLandingDecision.after(.cancelled, attempts: 1) == .stop)
        #expect(SpoolLandingDecision.after(.refused, attempts: 1) == .keepAndSpool)
        #expect(SpoolLandingDecision.after(.refused, attempts: 2) == .keepAndSpool)
        #expect(SpoolLandingDecision.after(.refused, attempts: 3) == .drop(.refused))
    }

    @Test("the repository's errors that mean it cannot work now, not that it refuses the snapshot")
    func outages() {
        func error(_ state: String) -> PostgresError { PostgresError(code: .server, message: "x", sqlState: state) }
        for state in ["08006", "53100", "57P01", "58030", "25006", "55P03", "57014", "40001"] {
            #expect(RepositoryOutage.matches(error(state)), "\(state)")
        }
        for state in ["22P02", "23505", "42P01", "XX000"] {
            #expect(!RepositoryOutage.matches(error(state)), "\(state)")
        }
        #expect(!RepositoryOutage.matches(nil))
    }

    @Test("a file claimed for its landing is never dropped under it; two bounds passes drop a file once")
    func claims() async throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var settings = SpoolSettings(directory: directory)
        settings.maxBytes = 1300
        let spool = try await SnapshotSpool.open(settings, metrics: nil, logger: Logger(label: "test"))
        var files: [SnapshotSpool.File] = []
        for _ in 0..<3 {
            let file = try await spool.newFile(serverID: 5)
            try Data(count: 600).write(to: URL(fileURLWithPath: file.path.string))
            files.append(SnapshotSpool.File(serverID: 5, path: file.path, bytes: 600, takenAt: file.takenAt))
        }
        #expect(spool.claim(files[0]) == false, "not in the spool yet")
        await spool.spooled(files[0])
        #expect(spool.claim(files[0]))
        #expect(!spool.claim(files[0]), "claimed once")
        // Over the bound: the claimed oldest stays, the next oldest goes, counted once (the two
        // passes at once both see the spool over its bound).
        let (second, third) = (files[1], files[2])
        async let first: Void = spool.spooled(second)
        async let other: Void = spool.spooled(third)
        _ = await (first, other)
        #expect(await spool.pending(serverID: 5) == [files[0], files[2]])
        #expect(
            SnapshotSpool.describe(spool.takeNotices(serverID: 5)) == [
                "1 snapshot taken while the repository was unreachable was dropped: spool full"
            ])
        #expect(spool.release(files[0], failed: true) == 1)
        #expect(spool.claim(files[0]) && spool.release(files[0], failed: true) == 2)
    }

    @Test(
        "cancelled while a file is open, writing or reading: it is closed all the same (a file handle left open stops the process)"
    )
    func cancelled() async throws {
        let directory = Self.directory()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let writing = Task {
            let writer = try await SpoolWriter.create(at: FilePath(directory + "/1.snapshot"), header: Self.header())
            withUnsafeCurrentTask { $0?.cancel() }
            writer.discard()
        }
        try await writing.value
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty)
        let path = directory + "/2.snapshot"
        _ = try await Self.write(at: path)
        let reading = Task {
            try await SpoolReader(path: FilePath(path)).replay { _ in withUnsafeCurrentTask { $0?.cancel() } }
        }
        _ = await reading.result
        // Still there, whole: only the reading stopped.
        #expect(try await SpoolReader(path: FilePath(path)).verify().sections.count == 2)
    }
}
