import Foundation
import NIOCore
import NIOFileSystem

/// Reads a spool file (`SpoolFormat`) record by record, checking its grammar and, at its end,
/// its hash: `verify` reads it whole before anything of it lands, `replay` reads it again
/// for the landing.
struct SpoolReader {
    /// What a verified file holds.
    struct Contents {
        var header: SpoolHeader
        /// Its sections, and whether each is complete (only those land).
        var sections: [(section: SpoolSection, complete: Bool)]
        var summary: SpoolSummary
    }

    /// A record, as `replay` hands it over.
    enum Record {
        case section(SpoolSection, index: Int)
        case data(ByteBuffer)
        case sectionEnd
    }

    let path: FilePath

    /// Reads the whole file: its contents, or `SpoolDamage` saying what is wrong with it.
    func verify() async throws -> Contents {
        var header: SpoolHeader?
        var sections: [(SpoolSection, Bool)] = []
        var summary = SpoolSummary(errors: [])
        try await read { tag, payload in
            switch tag {
            case .header: header = try decode(SpoolHeader.self, payload)
            case .section: sections.append((try decode(SpoolSection.self, payload), false))
            case .sectionEnd: sections[sections.count - 1].1 = true
            case .errors: summary = try decode(SpoolSummary.self, payload)
            case .data, .sectionFailed, .trailer: break
            }
        }
        guard let header, header.version == 1 else { throw SpoolDamage("unknown spool format version") }
        return Contents(header: header, sections: sections, summary: summary)
    }

    /// Reads the file again for its landing: each section (by its index in `Contents`), its
    /// data and its end (a file that changed since `verify` stops it with `SpoolDamage`).
    func replay(_ body: (Record) async throws -> Void) async throws {
        var index = 0
        try await read { tag, payload in
            switch tag {
            case .section:
                try await body(.section(try decode(SpoolSection.self, payload), index: index))
                // (An index beyond what `verify` saw: the file changed meanwhile.)
                index += 1
            case .data: try await body(.data(payload))
            case .sectionEnd, .sectionFailed: try await body(.sectionEnd)
            default: break
            }
        }
    }

    private func decode<T: Decodable>(_ type: T.Type, _ payload: ByteBuffer) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(payload.readableBytesView))
        } catch {
            throw SpoolDamage("unreadable \(type) record")
        }
    }

    /// Every record in order, checked against the grammar; then the hash.
    private func read(_ body: (SpoolFormat.Tag, ByteBuffer) async throws -> Void) async throws {
        let handle = try await FileSystem.shared.openFile(forReadingAt: path, options: OpenOptions.Read())
        // Closed whatever happens, cancellation included (a handle dropped open is fatal).
        defer { SpoolFiles.close(handle) }
        try await read(handle, body)
    }

    private func read(_ handle: ReadFileHandle, _ body: (SpoolFormat.Tag, ByteBuffer) async throws -> Void) async throws {
        do {
            var reader = handle.bufferedReader(capacity: .kibibytes(256))
            var hash = SpoolHash()
            var grammar = SpoolGrammar()
            var offset = 0
            let magic = try await reader.read(.bytes(Int64(SpoolFormat.magic.count)))
            guard Array(magic.readableBytesView) == SpoolFormat.magic else {
                throw SpoolDamage("not a spool file")
            }
            hash.update(magic.readableBytesView)
            offset += magic.readableBytes
            while !grammar.isComplete {
                let head = try await reader.read(.bytes(Int64(SpoolFormat.recordHeadSize)))
                guard head.readableBytes == SpoolFormat.recordHeadSize else {
                    throw SpoolDamage("truncated after \(offset + head.readableBytes) bytes")
                }
                let bytes = Array(head.readableBytesView)
                guard let tag = SpoolFormat.Tag(rawValue: bytes[0]) else {
                    throw SpoolDamage("corrupt at byte \(offset)")
                }
                let length = Int(bytes[1]) | Int(bytes[2]) << 8 | Int(bytes[3]) << 16 | Int(bytes[4]) << 24
                guard length <= SpoolFormat.maximumRecord else { throw SpoolDamage("corrupt at byte \(offset)") }
                try grammar.accept(tag)
                let expected = hash.bytes
                if tag != .trailer { hash.update(bytes) }
                let payload = try await reader.read(.bytes(Int64(length)))
                guard payload.readableBytes == length else {
                    throw SpoolDamage("truncated after \(offset + SpoolFormat.recordHeadSize + payload.readableBytes) bytes")
                }
                offset += SpoolFormat.recordHeadSize + length
                if tag == .trailer {
                    guard Array(payload.readableBytesView) == expected else {
                        throw SpoolDamage("corrupt: its check does not match")
                    }
                } else {
                    hash.update(payload.readableBytesView)
                    try await body(tag, payload)
                }
            }
            let rest = try await reader.read(.bytes(1))
            guard rest.readableBytes == 0 else { throw SpoolDamage("corrupt: bytes after its end") }
        }
    }
}
