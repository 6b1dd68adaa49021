import Foundation
import Glibc
import TestBed
import TestWaiting
import Testing

/// powa-web itself (pip, in the venv `scripts/powa-web-venv` makes: 4.1.4 for PoWA 4, 5.0.2
/// for powa-archivist 5.0.2, 5.3.1 for 5.3.0), logged in over HTTP against a scratch repository,
/// asking the collector running in this process through LISTEN/NOTIFY, exactly as a user's
/// browser would make it.
@Suite("powa-web as a real client", .timeLimit(.minutes(4)))
struct PowaWebTests {
    /// The powa-web release that matches each shared bed's powa-archivist (powa-web 5 logs in
    /// only to a repository of its own major.minor).
    static func webVersion(_ kind: BedKind) -> String {
        switch kind.powa {
        case "5.3.0": "5.3.1"
        case "5.0.2": "5.0.2"
        default: "4.1.4"
        }
    }

    @Test(
        "the config pages show every active server running, RELOAD is true, a deactivated server is no longer running",
        arguments: BedKind.sharedKinds)
    func configPages(kind: BedKind) async throws {
        let major = kind.major
        let venv = (ProcessInfo.processInfo.environment["POWA_WEB_VENV"] ?? "/tmp/powa-web-venv") + kind.suffix
        try await TestBed.run(
            "scripts/powa-web-venv", [], environment: ["POWA_WEB_VENV": venv, "POWA_WEB_VERSION": Self.webVersion(kind)])
        let bed = try await TestBed.shared(kind)
        let repository = try await ScratchRepository.create(on: bed)
        let first = try await repository.register(port: bed.remotePorts[0], frequency: 5)
        let second = try await repository.register(port: bed.remotePorts[1], frequency: 5)
        let collector = RunningCollector(repository: repository)
        let web: PowaWeb
        do {
            web = try await PowaWeb.start(venv: venv, bed: bed, database: repository.database, major: major)
        } catch {
            try? await collector.stop()
            throw error
        }
        do {
            try await web.login()

            // Every active server is running, as the collector's WORKERS_STATUS says (powa-web
            // waits 1 s for the answer, and the workers take a moment to connect: retry).
            let statuses = try await web.serverStatuses(until: { $0[first] == "running" && $0[second] == "running" })
            #expect(statuses[first] == "running" && statuses[second] == "running", "\(statuses)")
            // The repository itself (id 0) is powa-web's own business: no bgworker here.
            #expect(statuses[0] == "stopped")

            #expect(try await web.get("/reload_collector/") == "true")
            #expect(try await web.serverDetails(first) == ["success": ["Collector status for this instance: running"]])
            #expect(try await web.serverDetails(second) == ["success": ["Collector status for this instance: running"]])

            // Deactivated and reloaded: the collector stops its worker and no longer lists it, so
            // powa-web keeps its own default for the row, 'unknown' ('stopped' would be as right);
            // never 'running'. Server 1 is untouched.
            _ = try await repository.value("SELECT powa_deactivate_server($1::int)", ["\(second)"])
            #expect(try await web.get("/reload_collector/") == "true")
            let after = try await web.serverStatuses(until: { $0[first] == "running" && $0[second] != "running" })
            #expect(after[first] == "running", "\(after)")
            let deactivated = try #require(after[second], "server \(second) is missing from /config/powa_servers/")
            #expect(["unknown", "stopped"].contains(deactivated), "\(after)")
            #expect(try await web.serverDetails(first) == ["success": ["Collector status for this instance: running"]])
            // No status for it: powa-web's warning (or an alert if one was given), never success.
            let details = try await web.serverDetails(second)
            #expect(
                details == ["warning": ["Could not get status for this instance"]]
                    || details == ["alert": ["Collector status for this instance: stopped"]], "\(details)")
            // Its dashboard page still renders.
            #expect(try await web.get("/config/\(second)/").contains("Configuration overview"))
            #expect(try await web.get("/config/").contains(major == .five ? "Server list" : "Configuration"))

            if major == .five {
                // Actions > Force a snapshot, then Actions > Refresh catalogs (all databases,
                // then one), as powa-web 5 sends them.
                _ = try await repository.waitForSnapshots(first, count: 1)
                let refreshed = try await PoWA5Tests.lastRefresh(repository, first)
                let forced = try await web.get("/force_snapshot/\(first)")
                // (A scheduled snapshot may be running or have just run: those answers are right too.)
                #expect(
                    forced == #"[{"OK": "Snapshot will begin shortly"}]"#
                        || forced.contains("Last snapshot was less than 10s. ago")
                        || forced.contains("A snapshot is already in progress"), "\(forced)")
                let all = try await web.post("/refresh_db_cat/", json: #"{"srvid": "\#(first)", "dbnames": []}"#)
                #expect(all.contains("Catalogs will be refreshed during the next snapshot"), "\(all)")
                let one = try await web.post("/refresh_db_cat/", json: #"{"srvid": "\#(first)", "dbnames": ["app"]}"#)
                #expect(one.contains("Catalogs will be refreshed during the next snapshot"), "\(one)")
                // The snapshot running now, if any, started before the request: the next one.
                _ = try await repository.waitForSnapshots(first, count: 2)
                let after = try await PoWA5Tests.lastRefresh(repository, first)
                for database in ["app", "postgres", "powa"] {
                    let before = try #require(refreshed[database], "\(database) was not imported")
                    #expect(try #require(after[database]) > before, "\(database)")
                }
            }
        } catch {
            await web.stop()
            try? await collector.stop()
            throw error
        }
        #expect(await web.stop() == 128 + SIGTERM, "powa-web did not stop on SIGTERM")
        try await collector.stop()
    }
}

/// A powa-web process on a free loopback port, with its own configuration and cookie jar, and
/// curl to talk to it.
final class PowaWeb: Sendable {
    let process: DaemonProcess
    let directory: String
    let base: String
    private let curl: String
    /// The login form's user field (and cookie): `username` in 4.1, `user` in 5.
    private let userField: String

    private init(process: DaemonProcess, directory: String, base: String, curl: String, userField: String) {
        self.process = process
        self.directory = directory
        self.base = base
        self.curl = curl
        self.userField = userField
    }

    /// Writes the configuration (python syntax, read by tornado.options), starts powa-web and
    /// waits until it answers.
    static func start(venv: String, bed: TestBed, database: String, major: PoWAMajor) async throws -> PowaWeb {
        guard let curl = ["/usr/bin/curl", "/bin/curl"].first(where: FileManager.default.isExecutableFile(atPath:)) else {
            throw TestBedError(message: "curl is missing: run scripts/install-deps")
        }
        let directory = "/tmp/powa-web-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let port = try LoopbackListener.freePort()
        let configuration = """
            servers={'main': {'host': '127.0.0.1', 'port': '\(bed.repositoryPort)', 'database': '\(database)', \
            'query': {'client_encoding': 'utf8'}}}
            cookie_secret='powa-web-tests-\(UUID().uuidString)'
            address='127.0.0.1'
            port=\(port)

            """
        let path = directory + "/powa-web.conf"
        try configuration.write(toFile: path, atomically: true, encoding: .utf8)
        // HOME: powa-web also reads ~/.config/powa-web.conf and ~/.powa-web.conf.
        let process = try DaemonProcess(
            venv + "/bin/python", [venv + "/bin/powa-web", "--config=" + path],
            environment: ["PYTHONUNBUFFERED": "1", "HOME": directory], directory: directory)
        let web = PowaWeb(
            process: process, directory: directory, base: "http://127.0.0.1:\(port)", curl: curl,
            userField: major == .five ? "user" : "username")
        // The login page answers 403 to anyone not logged in.
        let serving = try await eventually(timeout: .seconds(30), interval: .milliseconds(200)) {
            (try? await web.request("/login/"))?.status == 403
        }
        if serving { return web }
        let output = process.output
        await web.stop()
        throw TestBedError(message: "powa-web did not answer on port \(port) within 30 s:\n\(output)")
    }

    /// Logs in as postgres with no password (trust), as the login form posts it: the secure
    /// cookies land in the jar.
    func login() async throws {
        let answer = try await request("/login/", form: "\(userField)=postgres&password=&server=main")
        let jar = (try? String(contentsOfFile: directory + "/cookies", encoding: .utf8)) ?? ""
        guard answer.status == 302, jar.contains(userField) else {
            throw TestBedError(message: "login failed: HTTP \(answer.status)\n\(answer.body)\n\(process.output)")
        }
    }

    /// The body of a page that must answer 200.
    func get(_ path: String) async throws -> String {
        let answer = try await request(path)
        guard answer.status == 200 else {
            throw TestBedError(message: "GET \(path): HTTP \(answer.status)\n\(answer.body)\n\(process.output)")
        }
        return answer.body
    }

    /// The body of a JSON POST that must answer 200.
    func post(_ path: String, json: String) async throws -> String {
        let answer = try await request(path, form: json, contentType: "application/json")
        guard answer.status == 200 else {
            throw TestBedError(message: "POST \(path): HTTP \(answer.status)\n\(answer.body)\n\(process.output)")
        }
        return answer.body
    }

    /// `collector_status` by server id from `/config/powa_servers/`, asked again (for 15 s at
    /// most) until `done` holds.
    func serverStatuses(until done: ([Int: String]) -> Bool) async throws -> [Int: String] {
        var statuses: [Int: String] = [:]
        _ = try await eventually(timeout: .seconds(15), interval: .milliseconds(300)) {
            let body = try await get("/config/powa_servers/")
            let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
            let rows = try #require(object?["data"] as? [[String: Any]], "not a servers list: \(body)")
            statuses = [:]
            for row in rows {
                if let id = row["id"] as? Int, let status = row["collector_status"] as? String { statuses[id] = status }
            }
            return done(statuses)
        }
        return statuses
    }

    /// The `messages` of `/config/<id>/server_details/` (its `data` is always empty).
    func serverDetails(_ id: Int) async throws -> [String: [String]] {
        let body = try await get("/config/\(id)/server_details/")
        let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        return try #require(object?["messages"] as? [String: [String]], "no messages: \(body)")
    }

    /// One HTTP request through curl with the cookie jar; a POST when `form` is given.
    func request(_ path: String, form: String? = nil, contentType: String? = nil) async throws -> (
        status: Int, body: String
    ) {
        let bodyPath = directory + "/body-\(UUID().uuidString)"
        defer { unlink(bodyPath) }
        let jar = directory + "/cookies"
        var arguments = ["-sS", "--max-time", "20", "-b", jar, "-c", jar, "-o", bodyPath, "-w", "%{http_code}"]
        if let form { arguments += ["--data", form] }
        if let contentType { arguments += ["-H", "Content-Type: \(contentType)"] }
        let client = try DaemonProcess(curl, arguments + [base + path], directory: directory)
        let code = await client.wait()
        let output = client.output
        guard code == 0, let status = Int(output.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw TestBedError(message: "curl \(path) failed (\(code)): \(output)")
        }
        return (status, (try? String(contentsOfFile: bodyPath, encoding: .utf8)) ?? "")
    }

    /// SIGTERM (SIGKILL if it is still there 10 s later), waits for the exit, removes the
    /// directory; returns the exit code (128 + 15 when SIGTERM ended it).
    @discardableResult
    func stop() async -> Int32 {
        process.signal(SIGTERM)
        let pid = process.pid
        let killer = Task {
            try await Task.sleep(for: .seconds(10))
            kill(pid, SIGKILL)
        }
        let code = await process.wait()
        killer.cancel()
        try? FileManager.default.removeItem(atPath: directory)
        return code
    }
}
