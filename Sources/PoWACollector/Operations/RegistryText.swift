import Glibc

/// The Prometheus text that one registry emitted, cut into its metric families, so that the
/// families of many registries (one per server, `ServerMetrics`) can be merged into one valid
/// exposition: each family's `# TYPE` line once, then its samples from every registry.
///
/// The text format puts a family's comment lines (`# HELP`, `# TYPE`) before its samples and
/// never starts a sample line with `#` (a newline in a label value is escaped), which is how
/// the families are found.
struct RegistryText: Sendable {
    /// A family's comment lines and its samples, as ranges of `bytes`.
    struct Section: Sendable {
        let header: Range<Int>
        let samples: Range<Int>
    }

    let bytes: [UInt8]
    /// By the index of the family in the list the text was cut with; nil when the registry
    /// has no such family.
    let sections: [Section?]

    /// Cuts `bytes` (what `PrometheusCollectorRegistry.emit(into:)` wrote) into the families
    /// named in `families` (UTF-8); a family not in that list is left out of `sections`.
    init(_ bytes: [UInt8], families: [[UInt8]]) {
        var sections = [Section?](repeating: nil, count: families.count)
        bytes.withUnsafeBufferPointer { text in
            guard let base = text.baseAddress else { return }
            // The family being read: its index, whether its `# TYPE` line was read, where its
            // comment lines and its samples start.
            var family: Int?
            var typed = false
            var headerStart = 0
            var samplesStart: Int?
            func close(at end: Int) {
                guard let index = family else { return }
                let start = samplesStart ?? end
                sections[index] = Section(header: headerStart..<start, samples: start..<end)
            }
            var line = 0
            while line < text.count {
                let next =
                    memchr(base + line, 0x0A, text.count - line).map { UnsafeRawPointer(base).distance(to: $0) + 1 }
                    ?? text.count
                if text[line] == UInt8(ascii: "#") {
                    // A comment after samples, or after a `# TYPE` line, starts the next family.
                    if samplesStart != nil || typed {
                        close(at: line)
                        family = nil
                        typed = false
                        headerStart = line
                        samplesStart = nil
                    }
                    if let name = Self.typeLineName(UnsafeBufferPointer(rebasing: text[line..<next])) {
                        family = families.firstIndex { $0.elementsEqual(name) }
                        typed = true
                    }
                } else if samplesStart == nil {
                    samplesStart = line
                }
                line = next
            }
            close(at: text.count)
        }
        self.bytes = bytes
        self.sections = sections
    }

    private static let typePrefix = Array("# TYPE ".utf8)

    /// The metric name of a `# TYPE name type` line.
    private static func typeLineName(_ line: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8>? {
        guard line.starts(with: typePrefix) else { return nil }
        let name = UnsafeBufferPointer(rebasing: line[typePrefix.count...])
        return UnsafeBufferPointer(rebasing: name[..<(name.firstIndex(of: UInt8(ascii: " ")) ?? name.endIndex)])
    }

    /// Appends to `output`, family after family (in the order of the list the texts were cut
    /// with), the first header found and the samples of every text, in the order of `texts`.
    static func merge(_ texts: [RegistryText], families: Int, into output: inout [UInt8]) {
        for family in 0..<families {
            var headerWritten = false
            for text in texts {
                guard let section = text.sections[family] else { continue }
                if !headerWritten {
                    output.append(contentsOf: text.bytes[section.header])
                    headerWritten = true
                }
                output.append(contentsOf: text.bytes[section.samples])
            }
        }
    }
}
