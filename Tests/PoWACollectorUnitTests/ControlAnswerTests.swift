import Synchronization
import Testing

@testable import PoWACollector

/// The answers of the control protocol, from the board in memory, without a server.
@Suite("Control answers")
struct ControlAnswerTests {
    final class ReloadCounter: Sendable {
        let count = Mutex(0)
    }

    /// A board with workers 1 (running), 2 (no remote connection) and 3 (running, snapshot in
    /// progress), and a reload that succeeds or not.
    final class Fixture: Sendable {
        let board = WorkerBoard()
        let mailboxes = [1: WorkerMailbox(), 2: WorkerMailbox(), 3: WorkerMailbox()]
        let counter: ReloadCounter
        var reloads: Int { counter.count.withLock { $0 } }
        let commands: ControlCommands
        let outcome: ReloadOutcome

        init(reload outcome: ReloadOutcome = .reloaded) {
            for (id, mailbox) in mailboxes { board.register(serverID: id, mailbox: mailbox) }
            board.setStatus(.running, serverID: 1)
            board.setStatus(.noRemoteConnection, serverID: 2)
            board.setStatus(.running, serverID: 3)
            board.snapshotStarted(serverID: 3, at: .now - .seconds(60))
            counter = ReloadCounter()
            commands = ControlCommands(board: board)
            self.outcome = outcome
        }

        /// The answer; RELOAD's is its reload's (the collector's loop runs it: here, `outcome`).
        func answer(_ payload: String) async -> String {
            let request = ControlRequest(payload: payload)
            if let reply = commands.answer(request, statuses: { board.statuses(serverID: $0) }) { return reply.payload }
            counter.count.withLock { $0 += 1 }
            return ControlCommands.reply(toReload: outcome).payload
        }
    }

    @Test("WORKERS_STATUS: every worker, one, or none")
    func workersStatus() async {
        let fixture = Fixture()
        #expect(
            await fixture.answer("WORKERS_STATUS c")
                == "WORKERS_STATUS OK {\"1\": \"running\", \"2\": \"no connection to remote server\", \"3\": \"running\"}")
        #expect(await fixture.answer("WORKERS_STATUS c 2") == "WORKERS_STATUS OK {\"2\": \"no connection to remote server\"}")
        #expect(await fixture.answer("WORKERS_STATUS c 9") == "WORKERS_STATUS OK {}")
        #expect(await fixture.answer("WORKERS_STATUS c x") == "WORKERS_STATUS ERROR invalid remote server id")
        #expect(await fixture.answer("WORKERS_STATUS c 1 2") == "WORKERS_STATUS ERROR Command \"WORKERS_STATUS\" malformed")
    }

    @Test("FORCE_SNAPSHOT: posted to a running worker once; every refusal says why")
    func forceSnapshot() async {
        let fixture = Fixture()
        #expect(await fixture.answer("FORCE_SNAPSHOT c 1") == "FORCE_SNAPSHOT OK Snapshot will begin shortly")
        #expect(fixture.mailboxes[1]?.isPending(.forceSnapshot) == true)
        #expect(await fixture.answer("FORCE_SNAPSHOT c 1") == "FORCE_SNAPSHOT ERROR A forced snapshot is already scheduled")
        #expect(
            await fixture.answer("FORCE_SNAPSHOT c 2")
                == "FORCE_SNAPSHOT ERROR No snapshot possible now: the worker is no connection to remote server")
        #expect(await fixture.answer("FORCE_SNAPSHOT c 3") == "FORCE_SNAPSHOT ERROR A snapshot is already in progress")
        fixture.board.snapshotEnded(serverID: 3)
        fixture.board.snapshotStarted(serverID: 3, at: .now - .seconds(3))
        fixture.board.snapshotEnded(serverID: 3)
        #expect(await fixture.answer("FORCE_SNAPSHOT c 3") == "FORCE_SNAPSHOT ERROR Last snapshot was less than 10s. ago")
        #expect(await fixture.answer("FORCE_SNAPSHOT c 9") == "FORCE_SNAPSHOT ERROR Server id 9 not found")
        for malformed in ["FORCE_SNAPSHOT c", "FORCE_SNAPSHOT c 1 2"] {
            #expect(await fixture.answer(malformed) == "FORCE_SNAPSHOT ERROR Command \"FORCE_SNAPSHOT\" malformed")
        }
        for invalid in ["-1", "1.0", "0x1", "9999999999", "１"] {
            #expect(await fixture.answer("FORCE_SNAPSHOT c \(invalid)") == "FORCE_SNAPSHOT ERROR invalid remote server id")
        }
        #expect(fixture.mailboxes[2]?.isPending(.forceSnapshot) == false)
    }

    @Test("REFRESH_DB_CAT: all, named, a spaced name when n is 1, and counts that do not match")
    func refreshCatalogs() async {
        let fixture = Fixture()
        let accepted = "REFRESH_DB_CAT OK Catalogs will be refreshed during the next snapshot"
        #expect(await fixture.answer("REFRESH_DB_CAT c 1 2 db1 db2") == accepted)
        #expect(fixture.board.takeCatalogRefresh(serverID: 1) == .databases(["db1", "db2"]))
        #expect(await fixture.answer("REFRESH_DB_CAT c 1 1 my db") == accepted)
        #expect(fixture.board.takeCatalogRefresh(serverID: 1) == .databases(["my db"]))
        #expect(await fixture.answer("REFRESH_DB_CAT c 1 1 db1") == accepted)
        #expect(await fixture.answer("REFRESH_DB_CAT c 1 0") == accepted)
        #expect(fixture.board.takeCatalogRefresh(serverID: 1) == .all)
        #expect(await fixture.answer("REFRESH_DB_CAT c 1 3 db1") == "REFRESH_DB_CAT ERROR Caller asked for 3 db, but found 1")
        #expect(await fixture.answer("REFRESH_DB_CAT c 1 1") == "REFRESH_DB_CAT ERROR Caller asked for 1 db, but found 0")
        #expect(await fixture.answer("REFRESH_DB_CAT c 9 0") == "REFRESH_DB_CAT ERROR Server id 9 not found")
        #expect(await fixture.answer("REFRESH_DB_CAT c 1") == "REFRESH_DB_CAT ERROR Command \"REFRESH_DB_CAT\" malformed")
        #expect(await fixture.answer("REFRESH_DB_CAT c 1 x") == "REFRESH_DB_CAT ERROR invalid number of databases")
        #expect(fixture.board.takeCatalogRefresh(serverID: 1) == nil)
    }

    @Test("RELOAD answers what the reload did; anything else is UNKNOWN")
    func reloadAndUnknown() async {
        let fixture = Fixture()
        #expect(await fixture.answer("RELOAD c") == "RELOAD OK OK")
        #expect(
            await Fixture(reload: .serverListUnread).answer("RELOAD c")
                == "RELOAD ERROR could not read the server list from the repository")
        #expect(
            await Fixture(reload: .configurationRejected("c.conf: invalid JSON")).answer("RELOAD c")
                == "RELOAD ERROR configuration file rejected, the running one kept: c.conf: invalid JSON")
        #expect(await Fixture(reload: .interrupted).answer("RELOAD c") == "RELOAD ERROR the collector is stopping")
        #expect(fixture.reloads == 1)
        #expect(await fixture.answer("DROP c everything") == "DROP UNKNOWN Message \"DROP\" invalid, command ignored")
        #expect(fixture.reloads == 1)
    }
}
