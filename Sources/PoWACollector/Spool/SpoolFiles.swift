import NIOFileSystem

/// The few file operations of the spool that must work whatever the task's state: swift-nio's
/// file handles close on its thread pool, which a cancelled task no longer reaches, and a handle
/// dropped unclosed stops the process.
enum SpoolFiles {
    /// Closes `handle` now, on this thread (a close does not block on a local file).
    static func close(_ handle: some FileHandleProtocol) {
        try? handle.detachUnsafeFileDescriptor().close()
    }

    /// Syncs a directory, so that a file just named in it stays named after a power loss.
    static func synchronizeDirectory(_ path: FilePath) async throws {
        let directory = try await FileSystem.shared.openDirectory(atPath: path, options: OpenOptions.Directory())
        defer { close(directory) }
        try await directory.fileHandle.synchronize()
    }
}
