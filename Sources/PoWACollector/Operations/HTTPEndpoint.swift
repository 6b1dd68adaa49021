import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

/// The collector's HTTP endpoint (`http.listen`), a Hummingbird 2 application run as a
/// service next to the collector:
///
/// - `GET /metrics`: the Prometheus text format (`CollectorMetrics`);
/// - `GET /livez`: 200 while the process serves its event loops;
/// - `GET /readyz`: 200 when the control channel holds its repository session and every
///   worker is `running`, else 503 with a short JSON body saying what is not; either body
///   says `"spooling"` (snapshots and bytes) while snapshots wait in the spool.
///
/// Every answer comes from memory: no request runs a query.
public enum HTTPEndpoint {
    /// The service serving `collector` on `address` (`host:port`, `[v6]:port`).
    public static func service(for collector: Collector, address: HTTPAddress, logger: Logger) -> some Service {
        let router = Router()
        router.get("livez") { _, _ in "ok\n" }
        router.get("readyz") { _, _ -> Response in
            let readiness = collector.readiness()
            let ready = readiness.repositoryUp && readiness.notRunning.isEmpty
            let spooling =
                readiness.spooled.map {
                    ", \"spooling\": {\"snapshots\": \($0.snapshots), \"bytes\": \($0.bytes)}"
                } ?? ""
            let body =
                ready
                ? "{\"ready\": true\(spooling)}\n"
                : "{\"ready\": false, \"repository\": \"\(readiness.repositoryUp ? "connected" : "unreachable")\", "
                    + "\"not_running\": \(ControlCommands.json(readiness.notRunning))\(spooling)}\n"
            return Response(
                status: ready ? .ok : .serviceUnavailable, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: body)))
        }
        router.get("metrics") { _, _ -> Response in
            let text = await collector.scrapeMetrics()
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: text)))
        }
        var httpLogger = logger
        httpLogger[metadataKey: "http"] = "\(address)"
        return Application(
            router: router, configuration: .init(address: .hostname(address.host, port: address.port)), logger: httpLogger)
    }
}

/// Where the HTTP endpoint listens (`http.listen`): `127.0.0.1:9188`, `[::1]:9188`,
/// `0.0.0.0:9188`.
public struct HTTPAddress: Sendable, Equatable, CustomStringConvertible {
    public let host: String
    public let port: Int

    /// Nil when `text` is not `host:port` with a port from 1 to 65535.
    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (1...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, !host.contains(" ") else { return nil }
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
