import NIOFileSystem

/// Writes one spool file (`SpoolFormat`) as its snapshot is read from the remote. The file
/// appears under its name only once `finish` has written its trailer and synced it to disk:
/// until then it is an unnamed file, which a crash or `discard` leaves nowhere.
final class SpoolWriter {
    private let handle: WriteFileHandle
    private var writer: BufferedWriter<WriteFileHandle>
    private var hash = SpoolHash()
    /// Bytes written so far.
    private(set) var bytes = 0
    private var closed = false

    private init(handle: WriteFileHandle) {
        self.handle = handle
        writer = handle.bufferedWriter(capacity: .kibibytes(256))
    }

    /// A new file at `path`, which must not exist yet, beginning with `header`.
    static func create(at path: FilePath, header: SpoolHeader) async throws -> SpoolWriter {
        let handle = try await FileSystem.shared.openFile(
            forWritingAt: path, options: .newFile(replaceExisting: false, permissions: [.ownerReadWrite]))
        let writer = SpoolWriter(handle: handle)
        do {
            try await writer.write(SpoolFormat.magic)
            try await writer.record(.header, SpoolFormat.json(header))
        } catch {
            await writer.discard()
            throw error
        }
        return writer
    }

    func beginSection(_ section: SpoolSection) async throws {
        try await record(.section, SpoolFormat.json(section))
    }

    /// COPY text of the current section.
    func data(_ chunk: [UInt8]) async throws {
        guard !chunk.isEmpty else { return }
        try await record(.data, chunk)
    }

    /// Ends the current section: complete, or failed (its rows are then left out).
    func endSection(failed: Bool) async throws {
        try await record(failed ? .sectionFailed : .sectionEnd, [])
    }

    /// Writes the snapshot's summary and the trailer, syncs the file and gives it its name.
    /// Returns its size.
    func finish(_ summary: SpoolSummary) async throws -> Int {
        do {
            try await record(.errors, SpoolFormat.json(summary))
            let check = hash.bytes
            try await write(SpoolFormat.recordHead(.trailer, length: check.count) + check)
            try await writer.flush()
            try await handle.synchronize()
            closed = true
            try await handle.close(makeChangesVisible: true)
        } catch {
            await discard()
            throw error
        }
        return bytes
    }

    /// Leaves no file behind.
    func discard() async {
        guard !closed else { return }
        closed = true
        try? await handle.close(makeChangesVisible: false)
    }

    private func record(_ tag: SpoolFormat.Tag, _ payload: [UInt8]) async throws {
        try await write(SpoolFormat.recordHead(tag, length: payload.count))
        try await write(payload)
    }

    private func write(_ chunk: [UInt8]) async throws {
        hash.update(chunk)
        bytes += chunk.count
        _ = try await writer.write(contentsOf: chunk)
    }

    deinit {
        if !closed { try? handle.detachUnsafeFileDescriptor().close() }
    }
}
