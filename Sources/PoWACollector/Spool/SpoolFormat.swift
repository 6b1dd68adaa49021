import Foundation

/// The layout of a spool file: one snapshot of one server, as the COPY streams its sources
/// sent, so that landing it later writes the same staging rows as landing it on time would
/// have (every history row's `ts` is the remote's, inside the streams).
///
/// After a magic line, a sequence of records, each `tag` (one byte), `length` (four bytes,
/// little-endian) and that many bytes:
/// - `H`: the header (`SpoolHeader`, JSON);
/// - `S`: a section begins (`SpoolSection`, JSON): the rows of one source, then
///   - `D`: COPY text of that source, any number of them,
///   - `E`: the section is complete, or `X`: it failed (its error is among the snapshot's);
/// - `R`: the snapshot's errors and the statements whose texts were left out
///   (`SpoolSummary`, JSON);
/// - `Z`: the FNV-1a 64 hash of every byte before this record, and the end of the file.
///
/// A file that does not end with a `Z` whose hash matches is damaged (a collector killed
/// while writing it leaves none: files appear only once complete): it never lands, not even
/// in part.
enum SpoolFormat {
    static let magic = Array("PoWA collector spool 1\n".utf8)

    enum Tag: UInt8 {
        case header = 0x48  // H
        case section = 0x53  // S
        case data = 0x44  // D
        case sectionEnd = 0x45  // E
        case sectionFailed = 0x58  // X
        case errors = 0x52  // R
        case trailer = 0x5A  // Z
    }

    /// The bytes of a record's tag and length.
    static func recordHead(_ tag: Tag, length: Int) -> [UInt8] {
        let length = UInt32(length)
        return [tag.rawValue, UInt8(length & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length >> 16 & 0xFF), UInt8(length >> 24)]
    }

    static let recordHeadSize = 5

    /// The largest record a reader accepts: far above what a writer makes (a COPY batch).
    static let maximumRecord = 64 << 20
}

/// The FNV-1a 64-bit hash: a file's check against truncation and corruption (not tampering).
struct SpoolHash: Equatable {
    private(set) var value: UInt64 = 0xCBF2_9CE4_8422_2325

    mutating func update(_ bytes: some Sequence<UInt8>) {
        var hash = value
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        value = hash
    }

    var bytes: [UInt8] { (0..<8).map { UInt8(value >> ($0 * 8) & 0xFF) } }
}

extension SpoolFormat {
    /// A record's JSON, keys in a fixed order.
    static func json(_ value: some Encodable) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array(try encoder.encode(value))
    }
}
