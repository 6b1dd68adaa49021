/// Why a spool file cannot land.
struct SpoolDamage: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The spool file could not be written (a full disk, say): the snapshot is lost.
struct SpoolWriteError: Error, CustomStringConvertible {
    let underlying: any Error
    init(_ underlying: any Error) { self.underlying = underlying }
    var description: String { "could not write the spool file: \(underlying)" }
}

/// The spool could not be opened.
struct SpoolError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
