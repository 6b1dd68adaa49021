import Testing

@testable import PostgresClient

/// The rules of one statement at a time and of the COPY sub-protocols, without a server.
@Suite("Connection state")
struct ConnectionStateTests {
    static let all: [ConnectionState] = [.idle, .statement, .copyOut, .copyOutEnded, .copyIn, .cleaningUp, .closed]

    @Test("a statement starts only on an idle connection; the refusal says why", arguments: all)
    func beginStatement(from start: ConnectionState) {
        var state = start
        do {
            try state.beginStatement()
            #expect(start == .idle)
            #expect(state == .statement)
        } catch {
            #expect(start != .idle)
            #expect(state == start, "a refused call changes nothing")
            switch start {
            case .closed: #expect(error.code == .connectionClosed)
            case .copyOut, .copyOutEnded, .copyIn: #expect(error.message.contains("a COPY is in progress"))
            default: #expect(error.message.contains("another statement is in progress"))
            }
        }
    }

    @Test("COPY calls only in their COPY; notifications only when idle", arguments: all)
    func copyCalls(in state: ConnectionState) {
        #expect(((try? state.requireCopyOut()) != nil) == [.copyOut, .copyOutEnded].contains(state))
        #expect(((try? state.requireCopyIn("writeCopyData")) != nil) == (state == .copyIn))
        #expect(((try? state.requireIdle("nextNotification")) != nil) == (state == .idle))
    }

    @Test("a COPY TO STDOUT: rows, their end, the final result, idle again")
    func copyOutLifecycle() throws {
        var state = ConnectionState.idle
        try state.beginStatement()
        state.copyStarted(out: true)
        #expect(state == .copyOut)
        // The statement's own end (its `defer`) leaves a COPY alone.
        state.statementEnded()
        #expect(state == .copyOut)
        state.copyOutRowsEnded()
        #expect(state == .copyOutEnded)
        state.readingCopyOutResult()
        #expect(state == .statement)
        state.statementEnded()
        #expect(state == .idle)
    }

    @Test("a COPY FROM STDIN: rows, its end, idle again")
    func copyInLifecycle() throws {
        var state = ConnectionState.idle
        try state.beginStatement()
        state.copyStarted(out: false)
        state.statementEnded()
        #expect(state == .copyIn)
        state.endingCopyIn()
        #expect(state == .statement)
        state.statementEnded()
        #expect(state == .idle)
    }

    @Test("abandoning tells what was in flight, and cleans up to idle", arguments: all)
    func abandon(from start: ConnectionState) {
        var state = start
        let inFlight = state.abandon()
        switch start {
        case .statement, .copyOut, .copyOutEnded, .copyIn:
            #expect(inFlight == start)
            #expect(state == .cleaningUp)
            // Nothing may start while the cleanup runs.
            #expect((try? state.beginStatement()) == nil)
            state.cleanedUp()
            #expect(state == .idle)
        case .idle, .cleaningUp, .closed:
            #expect(inFlight == nil)
            #expect(state == start)
        }
    }

    @Test("closing is final, from any state; a lost COPY leaves nothing in flight", arguments: all)
    func close(from start: ConnectionState) {
        var state = start
        state.close()
        #expect(state == .closed)
        state.copyLost()
        state.statementEnded()
        #expect(state == .closed)
        #expect(state.abandon() == nil)

        var lost = start
        lost.copyLost()
        #expect(lost == (start == .closed ? .closed : .idle))
    }
}
