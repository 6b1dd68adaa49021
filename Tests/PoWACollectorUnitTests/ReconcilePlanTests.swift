import Foundation
import Testing

@testable import PoWACollector

/// What a reload does to the workers, decided without a server.
@Suite("Reconcile decisions")
struct ReconcilePlanTests {
    static let configuration = CollectorConfiguration(repositoryDSN: "dbname=powa")

    static func server(_ id: Int, port: Int = 5432, frequency: Int = 300, alias: String? = nil) -> RemoteServer {
        RemoteServer(
            id: id, hostname: "db\(id)", alias: alias, port: port, username: "powa", dbname: "powa", frequency: frequency)
    }

    static func running(_ servers: [RemoteServer], settings: CollectorConfiguration = configuration)
        -> [Int: ReconcilePlan.Worker]
    {
        Dictionary(uniqueKeysWithValues: servers.map { ($0.id, ReconcilePlan.Worker(server: $0, settings: settings)) })
    }

    @Test("new servers start, gone or deactivated ones stop, unchanged ones re-check their versions")
    func addRemoveKeep() {
        let running = Self.running([Self.server(1), Self.server(2), Self.server(3)])
        let plan = ReconcilePlan(
            running: running,
            servers: [Self.server(1), Self.server(3, frequency: -1), Self.server(4), Self.server(0)],
            configuration: Self.configuration, slots: 4)
        #expect(plan.stops == [.init(serverID: 2, restarts: false), .init(serverID: 3, restarts: false)])
        #expect(plan.starts.map(\.id) == [4], "the repository's own row (id 0) never gets a worker")
        #expect(plan.rechecks == [1])
        #expect(plan.slots == nil)
    }

    @Test(
        "a change of what a worker's connection or schedule depends on restarts it, keeping its board entry",
        arguments: [
            server(1, port: 5433), server(1, frequency: 60), server(1, alias: "renamed"),
            RemoteServer(id: 1, hostname: "db1", port: 5432, username: "powa", password: "new", dbname: "powa", frequency: 300),
            RemoteServer(id: 1, hostname: "db1", port: 5432, username: "other", dbname: "powa", frequency: 300),
            RemoteServer(id: 1, hostname: "db1", port: 5432, username: "powa", dbname: "other", frequency: 300),
        ])
    func restart(changed: RemoteServer) {
        let plan = ReconcilePlan(
            running: Self.running([Self.server(1)]), servers: [changed], configuration: Self.configuration, slots: 4)
        #expect(plan.stops == [.init(serverID: 1, restarts: true)])
        #expect(plan.stops[0].reason == "settings changed")
        #expect(plan.starts == [changed])
        #expect(plan.rechecks.isEmpty)
    }

    @Test("the collector's settings: debug alone restarts nothing; anything else restarts every worker")
    func collectorSettings() {
        let running = Self.running([Self.server(1), Self.server(2)])
        var debug = Self.configuration
        debug.debug = true
        let quiet = ReconcilePlan(running: running, servers: [Self.server(1), Self.server(2)], configuration: debug, slots: 4)
        #expect(quiet.stops.isEmpty && quiet.starts.isEmpty && quiet.rechecks == [1, 2])

        var slots = Self.configuration
        slots.maxConcurrentSnapshots = 8
        let resized = ReconcilePlan(running: running, servers: [Self.server(1), Self.server(2)], configuration: slots, slots: 4)
        #expect(resized.stops.map(\.serverID) == [1, 2] && resized.stops.allSatisfy(\.restarts))
        #expect(resized.starts.map(\.id) == [1, 2])
        #expect(resized.slots == 8)

        var timeout = Self.configuration
        timeout.snapshotTimeout = 5
        let slower = ReconcilePlan(running: running, servers: [Self.server(2)], configuration: timeout, slots: 4)
        #expect(slower.stops == [.init(serverID: 1, restarts: false), .init(serverID: 2, restarts: true)])
        #expect(slower.starts.map(\.id) == [2] && slower.slots == nil)
    }

    @Test("servers' connection options: a change restarts only the servers whose own options changed")
    func serverOptions() throws {
        func configuration(_ servers: String) throws -> CollectorConfiguration {
            try ConfigurationFile.parse(Data(#"{"repository": {"dsn": "dbname=powa"}, "servers": \#(servers)}"#.utf8))
        }
        let before = try configuration(#"{"db1:5432": {"sslmode": "require"}}"#)
        let running = Self.running([Self.server(1), Self.server(2)], settings: before)
        // Server 1 keeps sslmode=require (now from "*"), server 2 gains it.
        let after = try configuration(#"{"*": {"sslmode": "require"}}"#)
        let plan = ReconcilePlan(running: running, servers: [Self.server(1), Self.server(2)], configuration: after, slots: 4)
        #expect(plan.stops == [.init(serverID: 2, restarts: true)])
        #expect(plan.rechecks == [1])
    }

    @Test("a server listed twice gets one worker, from its first row; an empty list stops everything")
    func oddLists() {
        let first = Self.server(5, port: 1111)
        let plan = ReconcilePlan(
            running: [:], servers: [first, Self.server(5, port: 2222)], configuration: Self.configuration, slots: 4)
        #expect(plan.starts == [first])
        let none = ReconcilePlan(
            running: Self.running([Self.server(1)]), servers: [], configuration: Self.configuration, slots: 4)
        #expect(none.stops == [.init(serverID: 1, restarts: false)] && none.starts.isEmpty && none.rechecks.isEmpty)
    }
}

/// The fleet's part in a reconcile: only the servers this collector owns.
@Suite("Reconcile decisions in a fleet")
struct FleetReconcilePlanTests {
    typealias Base = ReconcilePlanTests

    @Test("servers owned elsewhere are retired (not cancelled), owned ones start; unowned new ones do not")
    func owned() {
        let running = Base.running([Base.server(1), Base.server(2)])
        let plan = ReconcilePlan(
            running: running, servers: [Base.server(1), Base.server(2), Base.server(3), Base.server(4)],
            ownership: .owned([1, 3]), configuration: Base.configuration, slots: 4)
        #expect(plan.stops == [.init(serverID: 2, restarts: false, retires: true)])
        #expect(plan.starts.map(\.id) == [3])
        #expect(plan.rechecks == [1])
    }

    @Test("no membership now: what runs keeps running (a changed one restarts), nothing new starts")
    func keepRunning() {
        let running = Base.running([Base.server(1), Base.server(2)])
        let plan = ReconcilePlan(
            running: running, servers: [Base.server(1), Base.server(2, port: 6000), Base.server(3)],
            ownership: .keepRunning, configuration: Base.configuration, slots: 4)
        #expect(plan.stops == [.init(serverID: 2, restarts: true)])
        #expect(plan.starts.map(\.id) == [2])
        #expect(plan.rechecks == [1])
    }
}
