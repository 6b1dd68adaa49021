import CoreMetrics
import Foundation
import Prometheus
import Synchronization

/// The collector's metrics, through swift-metrics into a Prometheus registry of its own
/// (`scrape()` gives the text format the HTTP endpoint serves).
///
/// Events are counted as they happen (snapshots, rows, requests, reloads); states (worker
/// statuses, snapshot slots, the repository's reachability) are read from their owners at
/// scrape time, so they cannot drift from what the daemon knows. Labels are bounded: `server`
/// (the alias, else `host:port`) and `srvid` come from `powa_servers`, `source` from
/// `powa_functions`, and the others from fixed lists; never SQL text or an error message. The
/// series of a server that left `powa_servers` go away at the first scrape after the reload
/// that removed it.
public final class CollectorMetrics: Sendable {
    /// How a snapshot ended.
    public enum Outcome: String, Sendable, CaseIterable {
        case success, failed, timedOut = "timed_out"
    }

    let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    /// The label values of each server that has series, and how to remove them.
    private let servers = Mutex<[Int: ServerSeries]>([:])
    /// Whether the control channel holds its repository session.
    private let repositoryUp = Atomic<Bool>(false)
    private let started = Date()

    private struct ServerSeries {
        let labels: [(String, String)]
        /// Every source label seen for this server.
        var sources: Set<String> = []
    }

    public init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        let seconds: [Double] = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]
        factory.durationHistogramBuckets = [
            "powa_collector_snapshot_duration_seconds": seconds.map { .milliseconds(Int($0 * 1000)) },
            "powa_collector_repository_take_snapshot_duration_seconds": seconds.map { .milliseconds(Int($0 * 1000)) },
        ]
        self.factory = factory
        Gauge(label: "powa_collector_info", dimensions: [("version", Collector.version)], factory: factory).record(1)
        Gauge(label: "powa_collector_start_time_seconds", factory: factory).record(started.timeIntervalSince1970)
    }

    // MARK: Events

    /// The labels of a server, remembered so that its series can be removed.
    private func labels(_ server: RemoteServer, source: String? = nil) -> [(String, String)] {
        servers.withLock { servers in
            if servers[server.id] == nil {
                servers[server.id] = ServerSeries(
                    labels: [("server", server.name(useAlias: true)), ("srvid", "\(server.id)")])
            }
            if let source { servers[server.id]?.sources.insert(source) }
            return servers[server.id]!.labels
        }
    }

    func snapshotEnded(_ server: RemoteServer, outcome: Outcome, duration: Duration) {
        let labels = labels(server)
        Counter(label: "powa_collector_snapshots_total", dimensions: labels + [("outcome", outcome.rawValue)], factory: factory)
            .increment()
        Timer(label: "powa_collector_snapshot_duration_seconds", dimensions: labels, factory: factory)
            .recordNanoseconds(Int64(duration.secondsValue * 1e9))
        if outcome == .success {
            Gauge(label: "powa_collector_last_success_timestamp_seconds", dimensions: labels, factory: factory)
                .record(Date().timeIntervalSince1970)
        }
    }

    func sourceCopied(_ server: RemoteServer, source: String, rows: Int, bytes: Int) {
        let labels = labels(server, source: source) + [("source", source)]
        Counter(label: "powa_collector_rows_copied_total", dimensions: labels, factory: factory).increment(by: rows)
        Counter(label: "powa_collector_bytes_copied_total", dimensions: labels, factory: factory).increment(by: bytes)
    }

    func takeSnapshotDuration(_ duration: Duration) {
        Timer(label: "powa_collector_repository_take_snapshot_duration_seconds", factory: factory)
            .recordNanoseconds(Int64(duration.secondsValue * 1e9))
    }

    func controlRequest(command: String, status: ControlReply.Status) {
        let known = ["RELOAD", "WORKERS_STATUS", "FORCE_SNAPSHOT", "REFRESH_DB_CAT"]
        Counter(
            label: "powa_collector_control_requests_total",
            dimensions: [("command", known.contains(command) ? command : "other"), ("status", status.rawValue)],
            factory: factory
        ).increment()
    }

    func reloaded(success: Bool) {
        Counter(
            label: "powa_collector_reloads_total", dimensions: [("outcome", success ? "success" : "failed")],
            factory: factory
        ).increment()
    }

    func setRepositoryUp(_ up: Bool) { repositoryUp.store(up, ordering: .relaxed) }

    /// Whether the control channel holds its repository session.
    var isRepositoryUp: Bool { repositoryUp.load(ordering: .relaxed) }

    // MARK: Scrape

    /// The Prometheus text format of every metric, with the states read now from `board` and
    /// `limiter`.
    func scrape(board: WorkerBoard, limiter: SnapshotLimiter?) -> [UInt8] {
        let statuses = board.statuses()
        forgetServers(except: Set(statuses.keys))
        let known = servers.withLock { $0.mapValues(\.labels) }
        for (id, status) in statuses {
            guard let labels = known[id] else { continue }
            for candidate in WorkerStatus.allCases {
                Gauge(
                    label: "powa_collector_worker_status", dimensions: labels + [("status", candidate.rawValue)],
                    factory: factory
                ).record(candidate == status ? 1 : 0)
            }
        }
        let slots = limiter?.usage() ?? (inUse: 0, waiting: 0)
        Gauge(label: "powa_collector_repository_up", factory: factory).record(isRepositoryUp ? 1 : 0)
        Gauge(label: "powa_collector_snapshot_slots_in_use", factory: factory).record(slots.inUse)
        Gauge(label: "powa_collector_snapshot_slots_waiting", factory: factory).record(slots.waiting)
        return registry.emitToBuffer()
    }

    /// A worker started: its server's labels (its status is then scraped). A server renamed
    /// loses the series of its old name.
    func workerStarted(_ server: RemoteServer) {
        let fresh: [(String, String)] = [("server", server.name(useAlias: true)), ("srvid", "\(server.id)")]
        let stale = servers.withLock { servers -> ServerSeries? in
            guard let current = servers[server.id], current.labels.map(\.1) != fresh.map(\.1) else { return nil }
            servers[server.id] = nil
            return current
        }
        if let stale { destroy(stale) }
        _ = labels(server)
    }

    /// Removes the series of the servers no longer on the board.
    private func forgetServers(except current: Set<Int>) {
        let gone = servers.withLock { servers -> [ServerSeries] in
            let ids = servers.keys.filter { !current.contains($0) }
            return ids.compactMap { servers.removeValue(forKey: $0) }
        }
        for series in gone { destroy(series) }
    }

    /// Removes every series of a server.
    private func destroy(_ series: ServerSeries) {
        let labels = series.labels
        for outcome in Outcome.allCases {
            Counter(
                label: "powa_collector_snapshots_total", dimensions: labels + [("outcome", outcome.rawValue)], factory: factory
            )
            .destroy()
        }
        Timer(label: "powa_collector_snapshot_duration_seconds", dimensions: labels, factory: factory).destroy()
        Gauge(label: "powa_collector_last_success_timestamp_seconds", dimensions: labels, factory: factory).destroy()
        for status in WorkerStatus.allCases {
            Gauge(label: "powa_collector_worker_status", dimensions: labels + [("status", status.rawValue)], factory: factory)
                .destroy()
        }
        for source in series.sources {
            let sourceLabels = labels + [("source", source)]
            Counter(label: "powa_collector_rows_copied_total", dimensions: sourceLabels, factory: factory).destroy()
            Counter(label: "powa_collector_bytes_copied_total", dimensions: sourceLabels, factory: factory).destroy()
        }
    }
}
