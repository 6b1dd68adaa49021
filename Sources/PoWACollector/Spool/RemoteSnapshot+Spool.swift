import NIOCore
import PostgresClient

extension RemoteSnapshot {
    /// Lands a spooled snapshot as a live one lands, in one repository transaction: each
    /// complete section into its staging table (a savepoint each: one the repository refuses
    /// is reported, the others land), then the commit steps (the server's row, the mark, the
    /// texts left out, `powa_take_snapshot`, the errors, the fence). `remote`, when connected,
    /// gives back the texts the repository lacks.
    ///
    /// The statements to stage each section with come from the repository now, by the names the
    /// file gives: never SQL from the file.
    func landSpooled(
        _ reader: SpoolReader, contents: SpoolReader.Contents, remote: PoWASession?, repository: PoWARepository
    ) async throws(SnapshotError) -> Outcome {
        var outcome = Outcome()
        outcome.errors = contents.summary.errors
        outcome.elidedStatements = Set(contents.summary.elidedStatements)
        // Checked at the commit: a statement stored without the text this file left out.
        if !outcome.elidedStatements.isEmpty { outcome.seenStatements = [] }
        let connection = repository.connection
        var committing = false
        do {
            try await connection.inTransaction(deadline: deadline) {
                var staging = SpoolStaging(
                    snapshot: self, repository: repository, serverVersionNumber: contents.header.serverVersionNumber)
                try await reader.replay { record in
                    switch record {
                    case .section(let section, let index):
                        try await staging.begin(section, complete: contents.sections[index].complete, into: &outcome)
                    case .data(let chunk):
                        try await staging.write(chunk)
                    case .sectionEnd:
                        try await staging.end(into: &outcome)
                    }
                }
                try await step(.repository, .commit, remote: remote?.connection, repository: connection) {
                    try await commitSteps(remote: remote, repository: repository, into: &outcome)
                }
                committing = true
            }
        } catch {
            let step: SnapshotError.Step = committing ? .commit : .begin
            if let damage = error as? SpoolDamage {
                throw SnapshotError(.spoolDamaged, side: .repository, step: step, underlying: damage)
            }
            throw SnapshotError.classify(
                error, side: .repository, step: step, remote: nil, repository: connection, deadline: deadline,
                silence: nil)
                ?? SnapshotError(.repositoryFailed, side: .repository, step: step, underlying: error)
        }
        return outcome
    }
}

/// The sections of a spool file on their way into the staging tables: the COPY of the
/// section being read, in its savepoint.
private struct SpoolStaging {
    let snapshot: RemoteSnapshot
    let repository: PoWARepository
    let serverVersionNumber: Int
    /// PoWA 5's per-database sources by name, read once, when a file has some.
    private var databaseSources: [String: DatabaseSource]?
    /// The section being staged, and the error that stopped it.
    private var current: (name: String, failure: (any Error)?)?

    init(snapshot: RemoteSnapshot, repository: PoWARepository, serverVersionNumber: Int) {
        self.snapshot = snapshot
        self.repository = repository
        self.serverVersionNumber = serverVersionNumber
    }

    private var connection: PostgresConnection { repository.connection }
    private var deadline: ContinuousClock.Instant { snapshot.deadline }

    mutating func begin(_ section: SpoolSection, complete: Bool, into outcome: inout RemoteSnapshot.Outcome) async throws {
        current = nil
        guard complete else { return }  // failed when it was read: its error is among the file's
        guard let copyIn = try await copyIn(for: section) else {
            outcome.errors.append("\(describe(section)): not landed, the source is no longer enabled")
            return
        }
        try await connection.execute("SAVEPOINT powa_source", deadline: deadline)
        do {
            try await connection.startCopyIn(copyIn, deadline: deadline)
            current = (describe(section), nil)
        } catch {
            current = (describe(section), error)
        }
    }

    mutating func write(_ chunk: ByteBuffer) async throws {
        guard let section = current, section.failure == nil else { return }
        do {
            try await connection.writeCopyData(Array(chunk.readableBytesView), deadline: deadline)
        } catch {
            current = (section.name, error)
        }
    }

    mutating func end(into outcome: inout RemoteSnapshot.Outcome) async throws {
        guard let section = current else { return }
        current = nil
        var failure = section.failure
        if failure == nil {
            do {
                try await connection.finishCopyIn(deadline: deadline)
                outcome.landedSources += 1
            } catch {
                failure = error
            }
        }
        guard let failure else {
            try await connection.execute("RELEASE SAVEPOINT powa_source", deadline: deadline)
            return
        }
        // A repository that cannot go on ends the landing; a refused section, itself only.
        guard connection.canContinueTransaction else { throw failure }
        try await connection.execute("ROLLBACK TO SAVEPOINT powa_source; RELEASE SAVEPOINT powa_source", deadline: deadline)
        outcome.errors.append("\(section.name): \(failure)")
    }

    /// The COPY that stages `section` on the repository now; nil when it has no such source.
    private mutating func copyIn(for section: SpoolSection) async throws -> String? {
        switch section.kind {
        case .source:
            guard let source = snapshot.sources.first(where: { $0.querySource == section.name }),
                let schema = repository.extensions.schema(of: source.schemaOwner)
            else { return nil }
            return source.copyInStatement(schema: schema)
        case .module, .catalog:
            if databaseSources == nil {
                let modules = try await repository.databaseModules(
                    serverID: snapshot.server.id, serverVersionNumber: serverVersionNumber, deadline: deadline)
                let catalogs = try await repository.catalogs(
                    serverID: snapshot.server.id, serverVersionNumber: serverVersionNumber, refreshAll: true,
                    deadline: deadline)
                databaseSources = Dictionary((modules + catalogs).map { ("\($0.kind):\($0.name)", $0) }) { first, _ in first }
            }
            let kind: DatabaseSource.Kind = section.kind == .module ? .module : .catalog
            return databaseSources?["\(kind):\(section.name)"]?.copyInStatement
        }
    }

    private func describe(_ section: SpoolSection) -> String {
        section.database.map { "\(section.name) in database \($0)" } ?? section.name
    }
}
