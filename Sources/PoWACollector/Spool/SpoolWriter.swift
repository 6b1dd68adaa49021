import Foundation
import NIOFileSystem

/// Writes one spool file (`SpoolFormat`) as its snapshot is read from the remote. The file
/// appears under its name only once `finish` has written its trailer and synced it to disk:
/// until then it is `<name>.partial`, which `discard` removes, and a restart's scan too (a
/// collector killed while writing).
final class SpoolWriter {
    private let handle: WriteFileHandle
    private let path: FilePath
    private let partial: FilePath
    private var writer: BufferedWriter<WriteFileHandle>
    private var hash = SpoolHash()
    /// Bytes written so far.
    private(set) var bytes = 0
    private var closed = false

    private init(handle: WriteFileHandle, path: FilePath, partial: FilePath) {
        self.handle = handle
        self.path = path
        self.partial = partial
        writer = handle.bufferedWriter(capacity: .kibibytes(256))
    }

    /// The suffix of a file being written.
    static let partialSuffix = ".partial"

    /// A new file at `path`, which must not exist yet, beginning with `header`.
    static func create(at path: FilePath, header: SpoolHeader) async throws -> SpoolWriter {
        let partial = FilePath(path.string + partialSuffix)
        let handle = try await FileSystem.shared.openFile(
            forWritingAt: partial,
            options: OpenOptions.Write(
                existingFile: .truncate,
                newFile: OpenOptions.NewFile(permissions: [.ownerReadWrite], transactionalCreation: false)))
        let writer = SpoolWriter(handle: handle, path: path, partial: partial)
        do {
            try await writer.write(SpoolFormat.magic)
            try await writer.record(.header, SpoolFormat.json(header))
        } catch {
            writer.discard()
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

    /// Writes the snapshot's summary and the trailer, syncs the file, gives it its name and
    /// syncs its directory: once this returns, the file is on disk under its name. Returns its
    /// size.
    func finish(_ summary: SpoolSummary, directory: FilePath) async throws -> Int {
        do {
            try await record(.errors, SpoolFormat.json(summary))
            let check = hash.bytes
            try await write(SpoolFormat.recordHead(.trailer, length: check.count) + check)
            try await writer.flush()
            try await handle.synchronize()
            closed = true
            SpoolFiles.close(handle)
            // (A rename is one local metadata operation: done here, cancelled or not.)
            guard rename(partial.string, path.string) == 0 else {
                throw SpoolWriteError(SpoolError("cannot name \(path): \(String(cString: strerror(errno)))"))
            }
        } catch {
            discard()
            throw error
        }
        try await SpoolFiles.synchronizeDirectory(directory)
        return bytes
    }

    /// Leaves no file behind (at once, even in a cancelled task).
    func discard() {
        if !closed {
            closed = true
            SpoolFiles.close(handle)
        }
        unlink(partial.string)
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
        // Its owner finishes or discards it; a handle dropped open would stop the process.
        if !closed { SpoolFiles.close(handle) }
    }
}
