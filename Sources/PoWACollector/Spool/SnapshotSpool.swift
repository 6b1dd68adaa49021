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

        /// The metric's label: the case's name.
        var label: String { "\(self)" }
    }

    private struct State {
        var files: [Int: [File]] = [:]
        var bytes = 0
        /// Files a worker is landing now (claimed): never dropped under it.
        var landing: Set<FilePath> = []
        /// Failed landings of a file while the repository answered (a file that keeps failing
        /// is dropped rather than block its server's every snapshot).
        var attempts: [FilePath: Int] = [:]
        /// The servers' directories made or found (the spool's own is synced once each is made).
        var serverDirectories: Set<Int> = []
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
    private let metrics: CollectorMetrics?

    private init(settings: SpoolSettings, lock: Int32, logger: Logger, metrics: CollectorMetrics?) {
        self.settings = settings
        directory = FilePath(settings.directory)
        self.lock = lock
        self.logger = logger
        self.metrics = metrics
    }

    deinit { Foundation.close(lock) }

    /// The spool of `settings`: its directory made if missing, locked for this collector, and
    /// what it holds already (a restart's spool lands as any).
    static func open(_ settings: SpoolSettings, metrics: CollectorMetrics?, logger: Logger) async throws -> SnapshotSpool {
        let directory = FilePath(settings.directory)
        try await FileSystem.shared.createDirectory(
            at: directory, withIntermediateDirectories: true, permissions: [.ownerReadWriteExecute])
        let lockPath = settings.directory + "/.lock"
        let fd = Foundation.open(lockPath, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SpoolError("cannot open \(lockPath): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            Foundation.close(fd)
            throw SpoolError("\(settings.directory) is in use by another collector")
        }
        let spool = SnapshotSpool(settings: settings, lock: fd, logger: logger, metrics: metrics)
        try await spool.scan()
        return spool
    }

    // MARK: Writing

    /// The path of a new file for `serverID`, named after now (after any name given before).
    func newFile(serverID: Int) async throws -> (path: FilePath, takenAt: Double) {
        let serverDirectory = directory.appending("\(serverID)")
        if !state.withLock({ $0.serverDirectories.contains(serverID) }) {
            try await FileSystem.shared.createDirectory(
                at: serverDirectory, withIntermediateDirectories: false, permissions: [.ownerReadWriteExecute])
            try await SpoolFiles.synchronizeDirectory(directory)
            _ = state.withLock { $0.serverDirectories.insert(serverID) }
        }
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
        metrics?.snapshotSpooled(bytes: file.bytes)
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

    /// What the spool holds now.
    var contents: (snapshots: Int, bytes: Int) {
        state.withLock { state in (state.files.values.reduce(0) { $0 + $1.count }, state.bytes) }
    }

    /// Whether `serverID` has snapshots in the spool.
    func has(serverID: Int) -> Bool { state.withLock { $0.files[serverID] != nil } }

    /// The servers that have snapshots in the spool.
    var servers: Set<Int> { state.withLock { Set($0.files.keys) } }

    /// Claims `file` for its landing: false when it is gone (dropped meanwhile) or claimed.
    func claim(_ file: File) -> Bool {
        state.withLock { state in
            guard state.files[file.serverID]?.contains(file) == true, !state.landing.contains(file.path) else {
                return false
            }
            state.landing.insert(file.path)
            return true
        }
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

    /// The claimed `file` landed, moving the server's mark from `base` to `produced`: it leaves
    /// the spool.
    func landed(_ file: File, base: String?, produced: String?) async {
        let taken = take([file], claimed: true) { state, _ in
            if let base, let produced { state.successors[file.serverID, default: [:]][base] = produced }
            state.landed += 1
        }
        await delete(taken)
        metrics?.spooledSnapshotLanded()
    }

    /// The claimed `file` did not land, and stays for the next attempt; `failed`: the
    /// repository answered, and refused it. Returns how many times it failed so.
    @discardableResult
    func release(_ file: File, failed: Bool) -> Int {
        state.withLock { state in
            state.landing.remove(file.path)
            guard failed else { return state.attempts[file.path] ?? 0 }
            state.attempts[file.path, default: 0] += 1
            return state.attempts[file.path] ?? 0
        }
    }

    /// Drops `files` (claimed by the caller, or not claimed by anyone), counted for powa-web;
    /// damaged ones are kept aside as `*.damaged`.
    func drop(_ files: [File], reason: DropReason, claimed: Bool = false) async {
        let taken = take(files, claimed: claimed) { state, taken in
            state.dropped += taken.count
            for file in taken { state.notices[file.serverID, default: [:]][reason, default: 0] += 1 }
        }
        guard !taken.isEmpty else { return }
        if reason == .damaged {
            for file in taken {
                let name = (file.path.lastComponent?.string ?? "").replacingOccurrences(of: ".snapshot", with: ".damaged")
                try? await FileSystem.shared.moveItem(at: file.path, to: file.path.removingLastComponent().appending(name))
            }
        }
        await delete(taken)
        metrics?.spooledSnapshotsDropped(taken.count, reason: reason.label)
        logger.warning(
            "spooled snapshots dropped: \(reason.rawValue)",
            metadata: ["servers": "\(Set(taken.map(\.serverID)).sorted())", "snapshots": "\(taken.count)"])
    }

    /// The server's dropped snapshots powa-web has not been told of, by reason (each told
    /// once: `describe` gives the words).
    func takeNotices(serverID: Int) -> [DropReason: Int] {
        state.withLock { $0.notices.removeValue(forKey: serverID) ?? [:] }
    }

    /// Gives back notices that could not be told.
    func restoreNotices(serverID: Int, _ notices: [DropReason: Int]) {
        guard !notices.isEmpty else { return }
        state.withLock { $0.notices[serverID, default: [:]].merge(notices, uniquingKeysWith: +) }
    }

    /// What powa-web shows of dropped snapshots.
    static func describe(_ notices: [DropReason: Int]) -> [String] {
        notices.sorted { $0.key.rawValue < $1.key.rawValue }.map { reason, count in
            count == 1
                ? "1 snapshot taken while the repository was unreachable was dropped: \(reason.rawValue)"
                : "\(count) snapshots taken while the repository was unreachable were dropped: \(reason.rawValue)"
        }
    }

    // MARK: Bounds

    /// Drops the snapshots past `spool.max_age`, then the oldest while the spool holds more
    /// than `spool.max_bytes`, never one being landed. The victims leave the index in the same
    /// lock as they are chosen: two callers never drop one file twice.
    private func enforceBounds() async {
        let oldest = Date().timeIntervalSince1970 - settings.maxAge
        let victims = state.withLock { state -> [(DropReason, [File])] in
            let all = state.files.values.joined().filter { !state.landing.contains($0.path) }
            let expired = all.filter { $0.takenAt < oldest }
            var bytes = state.bytes - expired.reduce(0) { $0 + $1.bytes }
            var full: [File] = []
            for file in all.filter({ $0.takenAt >= oldest }).sorted(by: { $0.takenAt < $1.takenAt }) {
                guard bytes > settings.maxBytes else { break }
                full.append(file)
                bytes -= file.bytes
            }
            return [(.expired, expired), (.full, full)].filter { !$0.1.isEmpty }
        }
        for (reason, files) in victims {
            await drop(files, reason: reason)
        }
    }

    // MARK: Files

    /// Takes `files` out of the index (those still in it, and claimed only if `claimed`), and
    /// accounts for them, in one lock; logs the end of an outage when the spool is empty.
    private func take(_ files: [File], claimed: Bool, _ account: (inout State, [File]) -> Void) -> [File] {
        let (taken, emptied) = state.withLock { state -> ([File], (Int, Int, Duration)?) in
            var taken: [File] = []
            for file in files {
                guard claimed || !state.landing.contains(file.path),
                    let index = state.files[file.serverID]?.firstIndex(of: file)
                else { continue }
                state.files[file.serverID]?.remove(at: index)
                if state.files[file.serverID]?.isEmpty == true { state.files[file.serverID] = nil }
                state.bytes -= file.bytes
                state.landing.remove(file.path)
                state.attempts[file.path] = nil
                taken.append(file)
            }
            guard !taken.isEmpty else { return ([], nil) }
            account(&state, taken)
            guard state.files.isEmpty, let since = state.spoolingSince else { return (taken, nil) }
            state.spoolingSince = nil
            return (taken, (state.landed, state.dropped, .now - since))
        }
        if let (landed, dropped, duration) = emptied {
            logger.info(
                "spool landed: \(landed) snapshot(s) landed, \(dropped) dropped",
                metadata: ["seconds": "\(Int(duration.secondsValue))"])
        }
        return taken
    }

    /// Deletes files taken out of the index (a failure is only logged: the file is no longer
    /// counted, and a restart's scan finds it again).
    private func delete(_ files: [File]) async {
        for file in files {
            do {
                _ = try await FileSystem.shared.removeItem(at: file.path, recursively: false)
            } catch {
                logger.warning("could not delete a spool file", metadata: ["file": "\(file.path)", "error": "\(error)"])
            }
        }
    }

    /// Reads what the directory holds: `<srvid>/<nanoseconds>.snapshot` files.
    private func scan() async throws {
        var found: [File] = []
        var stale: [FilePath] = []
        var known: Set<Int> = []
        try await FileSystem.shared.withDirectoryHandle(atPath: directory) { root in
            for try await entry in root.listContents() where entry.type == .directory {
                guard let serverID = Int(entry.name.string), serverID > 0 else { continue }
                known.insert(serverID)
                try await FileSystem.shared.withDirectoryHandle(atPath: entry.path) { server in
                    for try await file in server.listContents() where file.type == .regular {
                        let fileName = file.name.string
                        guard let info = try await FileSystem.shared.info(forFileAt: file.path) else { continue }
                        if let name = Self.parseName(fileName) {
                            found.append(
                                File(serverID: serverID, path: file.path, bytes: Int(info.size), takenAt: Double(name) / 1e9))
                        } else if fileName.hasSuffix(SpoolWriter.partialSuffix)
                            || (fileName.hasSuffix(".damaged")
                                && info.lastDataModificationTime.seconds < Int(Date().timeIntervalSince1970 - settings.maxAge))
                        {
                            // A file a killed collector left half-written, or one set aside long ago.
                            stale.append(file.path)
                        }
                    }
                }
            }
        }
        for path in stale { _ = try? await FileSystem.shared.removeItem(at: path, recursively: false) }
        state.withLock { $0.serverDirectories = known }
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
