/// Checks the records of a spool file in order: what a well-formed file's grammar allows.
/// Pure: fed each record's tag as it is read, it says when the file is wrong.
struct SpoolGrammar {
    private enum Place { case start, body, inSection, ended }
    private var place = Place.start
    /// Sections seen, and whether each completed.
    private(set) var sections: [Bool] = []

    mutating func accept(_ tag: SpoolFormat.Tag) throws(SpoolDamage) {
        switch (place, tag) {
        case (.start, .header): place = .body
        case (.body, .section):
            place = .inSection
            sections.append(false)
        case (.inSection, .data): break
        case (.inSection, .sectionEnd):
            sections[sections.count - 1] = true
            place = .body
        case (.inSection, .sectionFailed): place = .body
        case (.body, .errors): break
        case (.body, .trailer): place = .ended
        default: throw SpoolDamage("unexpected record \(Character(UnicodeScalar(tag.rawValue)))")
        }
    }

    var isComplete: Bool { place == .ended }
}
