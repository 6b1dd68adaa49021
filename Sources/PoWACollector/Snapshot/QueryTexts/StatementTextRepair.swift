import Logging
import PostgresClient

/// Makes sure no statement reaches `powa_statements` with a text left out by
/// `StatementTextElider`: after the statements are staged, in the same repository transaction
/// and before `powa_take_snapshot`, the staged rows whose text was left out although the
/// repository does not know their statement get their real text back, copied from the remote
/// as COPY text (byte for byte, as the first time). A statement the remote no longer has
/// (evicted from pg_stat_statements meanwhile) is left out of this snapshot.
struct StatementTextRepair {
    let serverID: Int
    let deadline: ContinuousClock.Instant
    let logger: Logger

    /// What it did: texts restored, and staged rows dropped for want of one.
    struct Result: Equatable {
        var restored = 0
        var dropped = 0
    }

    /// `missing`: the staged statements to repair (`PoWARepository.statementsMissingTextQuery`);
    /// `remoteSchema`: powa's quoted schema on the remote, whose `powa_statements_src` gives the
    /// texts.
    func run(missing: [MissingText], remote: PostgresConnection, remoteSchema: String, repository: PoWARepository)
        async throws -> Result
    {
        guard !missing.isEmpty else { return Result() }
        try await repository.createRestoredTextsTable(deadline: deadline)
        // The keys travel as parameters of the remote's settings, in a transaction of their
        // own (COPY takes no parameters; pasted into its text, each repair would be a new
        // pg_stat_statements entry).
        let restored = try await remote.inTransaction(deadline: deadline) {
            try await KnownTextsOnRemote.pass(
                StatementKey.arrays(missing.compactMap(\.key)), to: remote, deadline: deadline)
            return try await PostgresConnection.pipeCopy(
                from: remote,
                """
                COPY (SELECT DISTINCT ON (userid, dbid, queryid) userid, dbid, queryid, query
                      FROM \(remoteSchema).powa_statements_src(0)
                      WHERE (userid, dbid, queryid) IN (SELECT * FROM \(KnownTextsOnRemote.keys))) TO STDOUT
                """,
                to: repository.connection, PoWARepository.restoredTextsCopyIn, deadline: deadline)
        }
        let dropped = try await repository.applyRestoredTexts(serverID: serverID, deadline: deadline)
        logger.info(
            "restored the texts of statements the repository did not know",
            metadata: ["restored": "\(restored)", "dropped": "\(dropped)", "missing": "\(missing.count)"])
        return Result(restored: restored, dropped: dropped)
    }
}
