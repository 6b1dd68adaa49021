import Foundation
import Logging
import Testing

@testable import PoWACollector

/// The pieces of the operations features that need no server.
@Suite("Operations, without a server")
struct OperationsUnitTests {
    @Test("the systemd status line: the count of servers, the most common status first")
    func statusSummary() {
        #expect(StatusSummary.line([:]) == "0 servers")
        #expect(StatusSummary.line([1: .running]) == "1 server: 1 running")
        let mixed: [Int: WorkerStatus] = [1: .running, 2: .running, 3: .noRemoteConnection, 4: .powaMissing, 5: .running]
        #expect(
            StatusSummary.line(mixed)
                == "5 servers: 3 running, 1 no connection to remote server, 1 powa not installed on remote server")
    }

    @Test("a delay in a log line: to a tenth of a second, never a first retry of \"0 s\"")
    func delayText() {
        #expect(Duration.milliseconds(900).logText == "0.9 s")
        #expect(Duration.milliseconds(1040).logText == "1 s")
        #expect(Duration.milliseconds(2250).logText == "2.3 s")
        #expect(Duration.seconds(30).logText == "30 s")
    }

    @Test("a session name longer than the server keeps is cut by us, on a character boundary, not by a NOTICE")
    func applicationNameFitted() {
        let long = ApplicationName.workerRepository("orders-primary.cluster-abcdefghijkl.eu-west-3.rds.amazonaws.com:5432")
        #expect(long.utf8.count == 63 && long.hasPrefix("PoWA collector - repo_conn for worker orders-primary"))
        let emoji = ApplicationName.worker(String(repeating: "é🐘", count: 20))
        // 24 bytes, then 6 per "é🐘": the next 🐘 would end at byte 66.
        #expect(emoji.utf8.count == 62 && emoji.hasSuffix("é"))
        #expect(ApplicationName.worker("db1:5432") == "PoWA collector - worker db1:5432")
    }

    @Test("a text log line: a newline in a message or a metadata value is written \\n, never a line of its own")
    func textLineFolded() {
        #expect(LogLevelSwitch.OneLine.text("a\nb\r\nc") == "a\\nb\\nc")
        #expect(LogLevelSwitch.OneLine.text("plain") == "plain")
        let forged = LogLevelSwitch.OneLine.value(
            .dictionary(["alias": "x\n2026-11-30T00:00:00+0000 info powa-collector: FAKE", "n": .stringConvertible(2)]))
        guard case .dictionary(let values) = forged, case .string(let alias)? = values["alias"] else {
            Issue.record("\(forged)")
            return
        }
        #expect(alias == "x\\n2026-11-30T00:00:00+0000 info powa-collector: FAKE")
    }

    @Test("a JSON log line: one line, escapes, metadata as fields, reserved names prefixed")
    func jsonLine() throws {
        let line = JSONLogHandler.line(
            time: "2026-11-29T16:00:00.000Z", level: .error, message: "could not connect:\n\t\"refused\" \\ é \u{1}",
            metadata: [
                "worker": "db:5432", "seconds": .stringConvertible(1.5), "message": "shadowed",
                "list": .array(["a", .dictionary(["k": "v"])]),
            ])
        #expect(line.hasSuffix("}\n") && line.dropLast().contains("\n") == false)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["message"] as? String == "could not connect:\n\t\"refused\" \\ é \u{1}")
        #expect(object["level"] as? String == "error" && object["time"] as? String == "2026-11-29T16:00:00.000Z")
        #expect(object["worker"] as? String == "db:5432" && object["seconds"] as? String == "1.5")
        #expect(object["metadata_message"] as? String == "shadowed")
        #expect((object["list"] as? [Any])?.count == 2)
        #expect(JSONLogHandler.now().count == "2026-11-29T16:00:00.000Z".count)
    }

    @Test("an answer of the protocol read back: command, status, data with spaces; garbage reads as KO")
    func replyPayload() {
        let reply = ControlReply(payload: "WORKERS_STATUS OK {\"1\": \"no connection to remote server\"}")
        #expect(
            reply == ControlReply(command: "WORKERS_STATUS", status: .ok, data: "{\"1\": \"no connection to remote server\"}"))
        #expect(ControlReply(payload: "RELOAD OK OK").data == "OK")
        #expect(ControlReply(payload: "X MAYBE y").status == .ko)
        #expect(ControlReply(payload: "").status == .ko)
        let long = ControlReply(command: "RELOAD", status: .error, data: "a b  c")
        #expect(ControlReply(payload: long.payload) == long)
    }

    @Test("log_format: text or json, anything else names the key and never echoes a string")
    func logFormatKey() throws {
        func load(_ json: String) throws -> CollectorConfiguration {
            let path = "/tmp/powa-logformat-\(UInt32.random(in: 0...UInt32.max)).conf"
            try json.write(toFile: path, atomically: true, encoding: .utf8)
            defer { unlink(path) }
            return try ConfigurationSource(commandLinePath: path, environment: [:]).load().0
        }
        #expect(try load(#"{"repository": {"dsn": "dbname=powa"}}"#).logFormat == .text)
        #expect(try load(#"{"repository": {"dsn": "dbname=powa"}, "log_format": "json"}"#).logFormat == .json)
        let error = #expect(throws: ConfigurationError.self) {
            try load(#"{"repository": {"dsn": "dbname=powa"}, "log_format": "S3cret"}"#)
        }
        #expect(error?.description.contains("\"log_format\" must be \"text\" or \"json\", not a string") == true)
        #expect(error?.description.contains("S3cret") == false)
    }

    @Test("the commands' tables: columns aligned by characters, an emoji in a name cut nowhere")
    func textTable() {
        let lines = TextTable.lines([
            ["srvid", "server", "status"],
            ["1", "replica x 😀 (127.0.0.1:5911)", "running"],
            ["12", "b", "stopped"],
        ])
        #expect(
            lines == [
                "srvid  server                        status",
                "1      replica x 😀 (127.0.0.1:5911)  running",
                "12     b                             stopped",
            ])
    }

    @Test("check's report: ✓/✗ per column, the problems below with their hints, the JSON the same")
    func checkReport() throws {
        var report = CheckReport(repository: .init(check: "repository", ok: true, detail: "powa 4.1.4 (PoWA 4 mode)"))
        report.servers = [
            .init(
                id: 1, name: "a",
                items: [
                    .init(check: "connection", ok: true, detail: "PostgreSQL 15.20"),
                    .init(check: "powa", ok: true, detail: "4.1.4"),
                    .init(check: "pg_qualstats_src", ok: false, detail: "function does not exist", hint: "install it"),
                    .init(check: "sources", ok: false, detail: "7 of 8 callable"),
                ])
        ]
        #expect(!report.usable)
        let lines = report.text.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasPrefix("1      a       ✓ PostgreSQL 15.20  ✓ 4.1.4  -           ✗") })
        #expect(lines.contains("✗ 1 a pg_qualstats_src: function does not exist"))
        #expect(lines.contains("  hint: install it"))
        #expect(lines.last == "1 server: 0 usable")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(report.json.utf8)) as? [String: Any])
        #expect(object["usable"] as? Bool == false)
        #expect(
            CollectorCheck.hint(for: PostgresErrorStandIn("FATAL:  password authentication failed for user \"x\""))?.contains(
                "password") == true)
        #expect(CollectorCheck.hint(for: PostgresErrorStandIn("Connection refused"))?.contains("running") == true)
        #expect(CollectorCheck.hint(for: PostgresErrorStandIn("something else")) == nil)
    }

    struct PostgresErrorStandIn: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    @Test("http.listen: host:port and [v6]:port; anything else names the key, never the value")
    func httpAddress() throws {
        #expect(HTTPAddress("127.0.0.1:9188") == HTTPAddress("127.0.0.1:9188") && HTTPAddress("127.0.0.1:9188")?.port == 9188)
        #expect(HTTPAddress("[::1]:9188")?.host == "::1" && HTTPAddress("[::1]:9188")?.description == "[::1]:9188")
        for bad in ["9188", "host:0", "host:70000", ":9188", "host:port", "a b:1"] { #expect(HTTPAddress(bad) == nil, "\(bad)") }
        let error = #expect(throws: ConfigurationError.self) {
            try ConfigurationFile.parse(Data(#"{"repository": {"dsn": "x"}, "http": {"listen": "S3cret"}}"#.utf8))
        }
        #expect(error?.description.contains("\"http.listen\" must be host:port") == true)
        #expect(error?.description.contains("S3cret") == false)
        let off = try ConfigurationFile.parse(Data(#"{"repository": {"dsn": "x"}}"#.utf8))
        #expect(off.httpListen == nil)
    }

    @Test("metrics: a server's series from its first worker, statuses read at scrape time, gone with the server")
    func metricsLifecycle() {
        let metrics = CollectorMetrics()
        let board = WorkerBoard()
        let server = RemoteServer(
            id: 3, hostname: "db", alias: "orders", port: 5432, username: "u", dbname: "powa", frequency: 300)
        board.register(serverID: 3, mailbox: WorkerMailbox())
        board.setStatus(.running, serverID: 3)
        metrics.workerStarted(server)
        metrics.snapshotEnded(server, outcome: .success, duration: .milliseconds(120))
        metrics.sourceCopied(server, source: "powa_statements_src", rows: 10, bytes: 1000)
        var text = String(decoding: metrics.scrape(board: board, limiter: SnapshotLimiter(permits: 4)), as: UTF8.self)
        #expect(text.contains(#"powa_collector_snapshots_total{server="orders",srvid="3",outcome="success"} 1"#), "\(text)")
        #expect(text.contains(#"powa_collector_worker_status{server="orders",srvid="3",status="running"} 1"#))
        #expect(text.contains(#"powa_collector_rows_copied_total{server="orders",srvid="3",source="powa_statements_src"} 10"#))
        #expect(text.contains("powa_collector_snapshot_slots_in_use 0"))
        board.remove(serverID: 3)
        text = String(decoding: metrics.scrape(board: board, limiter: nil), as: UTF8.self)
        #expect(!text.contains(#"srvid="3""#), "\(text)")
        #expect(text.contains("powa_collector_info"))
    }
}
