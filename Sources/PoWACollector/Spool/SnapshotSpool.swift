import Foundation
import Logging
import NIOFileSystem
import Synchronization

/// Snapshots that could not land because the repository could not take them, kept on local
/// disk until it can: one file a snapshot (`SpoolFormat`), under `<directory>/<srvid>/`, named
/// by when it was taken, so that each server's land oldest first.
///
/// One owner of the directory: the collector that locked it (a second one sharing it would
/// land the other's snapshots). Workers write and land their own server's files; this type
/// keeps the index, the bounds (`spool.max_bytes` over every server, `spool.max_age`: the
/// oldest go first, counted and told to powa-web), the counts for the metrics, and the two
/// log lines of an outage (spooling began, the spool landed).
public final class SnapshotSpool: Sendable {
    /// A snapshot waiting in the spool.
    struct File: Sendable, Equatable {
        let serverID: Int
        let path: FilePath
        let bytes: Int
        /// When it was taken, seconds since the epoch (its name, in nanoseconds).
        let takenAt: Double
    }

    /// Why spooled snapshots were dropped, in powa-web's words.
    enum DropReason: String, Sendable, CaseIterable {
        case full = "spool full"
        case expired = "older than spool.max_age"
        case moved = "the server was snapshotted by another collector meanwhile"
        case damaged = "unreadable spool file"
        case refused = "the repository refused it"

        var label: String {
            switch self {
            case .full: "full"
            case .expired: "expired"
            case .moved: "moved"
            case .damaged: "damaged"
            case .refused: "refused"
            }
        }
    }

    private struct State {
        var files: [Int: [File]] = [:]
        var bytes = 0
        /// Files a worker is landing now: never dropped under it.
        var landing: Set<FilePath> = []
        /// Drops not told to powa-web yet: server → reason → count.
        var notices: [Int: [DropReason: Int]] = [:]
        /// The marks this collector's own landings left, by the mark each followed: a file
        /// spooled before them follows them.
        var successors: [Int: [String: String]] = [:]
        var lastName: UInt64 = 0
        /// Since the spool was last empty: snapshots landed and dropped.
        var landed = 0
        var dropped = 0
        var spoolingSince: ContinuousClock.Instant?
    }

    let settings: SpoolSettings
    private let directory: FilePath
    private let state = Mutex(State())
    private let lock: Int32
    private let logger: Logger
    private let counters: SpoolCounters

    private init(settings: SpoolSettings, lock: Int32, logger: Logger, counters: SpoolCounters) {
        self.settings = settings
        directory = FilePath(settings.directory)
        self.lock = lock
        self.logger = logger
        self.counters = counters
    }

    deinit { close(lock) }

    /// The spool of `settings`: its directory made if missing, locked for this collector, and
    /// what it holds already (a restart's spool lands as any).
    static func open(_ settings: SpoolSettings, metrics: CollectorMetrics?, logger: Logger) async throws -> SnapshotSpool {
        let directory = FilePath(settings.directory)
        try await FileSystem.shared.createDirectory(
            at: directory, withIntermediateDirectories: true, permissions: [.ownerReadWriteExecute])
        let lockPath = settings.directory + "/.lock"
        let fd = Glibc.open(lockPath, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SpoolError("cannot open \(lockPath): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            Glibc.close(fd)
            throw SpoolError("\(settings.directory) is in use by another collector")
        }
        let spool = SnapshotSpool(settings: settings, lock: fd, logger: logger, counters: SpoolCounters(metrics))
        try await spool.scan()
        return spool
    }

    // MARK: Writing

    /// The path of a new file for `serverID`, named after now (after any name given before).
    func newFile(serverID: Int) async throws -> (path: FilePath, takenAt: Double) {
        let serverDirectory = directory.appending("\(serverID)")
        try await FileSystem.shared.createDirectory(
            at: serverDirectory, withIntermediateDirectories: false, permissions: [.ownerReadWriteExecute])
        let name = state.withLock { state in
            let now = UInt64(Date().timeIntervalSince1970 * 1e9)
            state.lastName = max(now, state.lastName + 1)
            return state.lastName
        }
        return (serverDirectory.appending(Self.fileName(name)), Double(name) / 1e9)
    }

    /// A snapshot was written: it joins the spool, whose bounds may drop the oldest.
    func spooled(_ file: File) async {
        let began = state.withLock { state in
            state.files[file.serverID, default: []].append(file)
            state.bytes += file.bytes
            guard state.spoolingSince == nil else { return false }
            state.spoolingSince = .now
            state.landed = 0
            state.dropped = 0
            return true
        }
        counters.spooled(bytes: file.bytes)
        if began {
            logger.info(
                "spooling snapshots: the repository cannot take them; they land when it can",
                metadata: ["directory": "\(settings.directory)"])
        }
        await enforceBounds()
    }

    // MARK: Landing

    /// The server's spooled snapshots, oldest first (those past `spool.max_age` dropped).
    func pending(serverID: Int) async -> [File] {
        await enforceBounds()
        return state.withLock { $0.files[serverID] ?? [] }
    }

    /// Whether any snapshot is in the spool.
    var isSpooling: Bool { state.withLock { $0.bytes > 0 || !$0.files.isEmpty } }

    /// What the spool holds now.
    var contents: (snapshots: Int, bytes: Int) {
        state.withLock { state in (state.files.values.reduce(0) { $0 + $1.count }, state.bytes) }
    }

    /// A worker begins landing `file` (it is not dropped meanwhile).
    func beginLanding(_ file: File) {
        _ = state.withLock { $0.landing.insert(file.path) }
    }

    /// Whether a file spooled after the server's `base` mark may land on `current`: the same
    /// mark, or one this collector's own landings of the server's spool led to from it.
    func follows(serverID: Int, base: String?, current: String?) -> Bool {
        state.withLock { state in
            var mark = base
            var steps = 0
            while mark != current, let next = mark.flatMap({ state.successors[serverID]?[$0] }), steps < 100_000 {
                mark = next
                steps += 1
            }
            return mark == current
        }
    }

    /// `file` landed, moving the server's mark from `base` to `produced`: it leaves the spool.
    func landed(_ file: File, base: String?, produced: String?) async {
        state.withLock { state in
            if let base, let produced { state.successors[file.serverID, default: [:]][base] = produced }
        }
        await remove([file]) { state in state.landed += 1 }
        counters.landed()
    }

    /// `file` did not land, and stays for the next attempt.
    func endLanding(_ file: File) {
        _ = state.withLock { $0.landing.remove(file.path) }
    }

    /// Drops `files`, counted for powa-web; damaged ones are kept aside as `*.damaged`.
    func drop(_ files: [File], reason: DropReason) async {
        guard !files.isEmpty else { return }
        if reason == .damaged {
            for file in files {
                try? await FileSystem.shared.moveItem(
                    at: file.path, to: FilePath(file.path.string.replacingOccurrences(of: ".snapshot", with: ".damaged")))
            }
        }
        await remove(files) { state in
            state.dropped += files.count
            state.notices[files[0].serverID, default: [:]][reason, default: 0] += files.count
        }
        counters.dropped(files.count, reason: reason)
        logger.warning(
            "spooled snapshots dropped: \(reason.rawValue)",
            metadata: ["servers": "\(Set(files.map(\.serverID)).sorted())", "snapshots": "\(files.count)"])
    }

    /// What powa-web is to be told of the server's dropped snapshots (each told once).
    func takeNotices(serverID: Int) -> [String] {
        let notices = state.withLock { $0.notices.removeValue(forKey: serverID) ?? [:] }
        return notices.sorted { $0.key.rawValue < $1.key.rawValue }.map { reason, count in
            count == 1
                ? "1 snapshot taken while the repository was unreachable was dropped: \(reason.rawValue)"
                : "\(count) snapshots taken while the repository was unreachable were dropped: \(reason.rawValue)"
        }
    }

    /// Gives `notices` back (they could not be told).
    func restoreNotices(serverID: Int, _ notices: [String]) {
        guard !notices.isEmpty else { return }
        state.withLock { state in
            for notice in notices {
                guard let reason = DropReason.allCases.first(where: { notice.hasSuffix(": \($0.rawValue)") }),
                    let count = Int(notice.prefix { $0.isNumber })
                else { continue }
                state.notices[serverID, default: [:]][reason, default: 0] += count
            }
        }
    }

    // MARK: Bounds

    /// Drops the snapshots past `spool.max_age`, then the oldest while the spool holds more
    /// than `spool.max_bytes`, never one being landed.
    private func enforceBounds() async {
        let oldest = Date().timeIntervalSince1970 - settings.maxAge
        let (expired, full) = state.withLock { state -> ([File], [File]) in
            let all = state.files.values.joined().filter { !state.landing.contains($0.path) }
            let expired = all.filter { $0.takenAt < oldest }
            var bytes = state.bytes - expired.reduce(0) { $0 + $1.bytes }
            var full: [File] = []
            for file in all.filter({ $0.takenAt >= oldest }).sorted(by: { $0.takenAt < $1.takenAt }) {
                guard bytes > settings.maxBytes else { break }
                full.append(file)
                bytes -= file.bytes
            }
            return (expired, full)
        }
        for (reason, files) in [(DropReason.expired, expired), (.full, full)] {
            for group in Dictionary(grouping: files, by: \.serverID).values {
                await drop(group, reason: reason)
            }
        }
    }

    // MARK: Files

    private func remove(_ files: [File], _ account: (inout State) -> Void) async {
        for file in files {
            _ = try? await FileSystem.shared.removeItem(at: file.path, recursively: false)
        }
        let emptied = state.withLock { state -> (Int, Int, Duration)? in
            for file in files {
                guard let index = state.files[file.serverID]?.firstIndex(of: file) else { continue }
                state.files[file.serverID]?.remove(at: index)
                if state.files[file.serverID]?.isEmpty == true { state.files[file.serverID] = nil }
                state.bytes -= file.bytes
                state.landing.remove(file.path)
            }
            account(&state)
            guard state.files.isEmpty, let since = state.spoolingSince else { return nil }
            state.spoolingSince = nil
            return (state.landed, state.dropped, .now - since)
        }
        if let (landed, dropped, duration) = emptied {
            logger.info(
                "spool landed: \(landed) snapshot(s) landed, \(dropped) dropped",
                metadata: ["seconds": "\(Int(duration.secondsValue))"])
        }
    }

    /// Reads what the directory holds: `<srvid>/<nanoseconds>.snapshot` files.
    private func scan() async throws {
        var found: [File] = []
        try await FileSystem.shared.withDirectoryHandle(atPath: directory) { root in
            for try await entry in root.listContents() where entry.type == .directory {
                guard let serverID = Int(entry.name.string), serverID > 0 else { continue }
                try await FileSystem.shared.withDirectoryHandle(atPath: entry.path) { server in
                    for try await file in server.listContents() where file.type == .regular {
                        guard let name = Self.parseName(file.name.string),
                            let info = try await FileSystem.shared.info(forFileAt: file.path)
                        else { continue }
                        found.append(
                            File(serverID: serverID, path: file.path, bytes: Int(info.size), takenAt: Double(name) / 1e9))
                    }
                }
            }
        }
        guard !found.isEmpty else { return }
        state.withLock { state in
            for file in found.sorted(by: { $0.takenAt < $1.takenAt }) {
                state.files[file.serverID, default: []].append(file)
                state.bytes += file.bytes
            }
            state.lastName = found.compactMap { Self.parseName($0.path.lastComponent?.string ?? "") }.max() ?? 0
            state.spoolingSince = .now
        }
        logger.info(
            "spool found at start: its snapshots land once the repository takes them",
            metadata: [
                "directory": "\(settings.directory)", "snapshots": "\(found.count)",
                "servers": "\(Set(found.map(\.serverID)).count)",
            ])
        await enforceBounds()
    }

    private static func fileName(_ name: UInt64) -> String {
        let digits = String(name)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".snapshot"
    }

    private static func parseName(_ name: String) -> UInt64? {
        guard name.hasSuffix(".snapshot"), name.count == 29 else { return nil }
        return UInt64(name.prefix(20))
    }
}

/// The spool could not be opened.
struct SpoolError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The spool's counts, into the metrics when there are any.
struct SpoolCounters: Sendable {
    let metrics: CollectorMetrics?
    init(_ metrics: CollectorMetrics?) { self.metrics = metrics }

    func spooled(bytes: Int) { metrics?.snapshotSpooled(bytes: bytes) }
    func landed() { metrics?.spooledSnapshotLanded() }
    func dropped(_ count: Int, reason: SnapshotSpool.DropReason) {
        metrics?.spooledSnapshotsDropped(count, reason: reason.label)
    }
}
