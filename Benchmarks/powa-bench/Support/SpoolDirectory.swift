import Foundation

/// What a collector's spool directory holds: `<directory>/<srvid>/<nanoseconds>.snapshot`
/// files, read from the outside while the collector runs.
struct SpoolDirectory: Sendable {
    /// Files by server id.
    let filesByServer: [Int: Int]
    /// Their bytes (0 unless asked).
    let bytes: Int

    var files: Int { filesByServer.values.reduce(0, +) }

    /// Lists the directory; with `sizes`, stats every file too.
    static func read(_ directory: String, sizes: Bool = false) -> SpoolDirectory {
        let manager = FileManager.default
        var filesByServer: [Int: Int] = [:]
        var bytes = 0
        for entry in (try? manager.contentsOfDirectory(atPath: directory)) ?? [] {
            guard let server = Int(entry) else { continue }
            let names = ((try? manager.contentsOfDirectory(atPath: directory + "/" + entry)) ?? [])
                .filter { $0.hasSuffix(".snapshot") }
            guard !names.isEmpty else { continue }
            filesByServer[server] = names.count
            if sizes {
                for name in names {
                    let attributes = try? manager.attributesOfItem(atPath: "\(directory)/\(entry)/\(name)")
                    bytes += (attributes?[.size] as? Int) ?? 0
                }
            }
        }
        return SpoolDirectory(filesByServer: filesByServer, bytes: bytes)
    }
}
