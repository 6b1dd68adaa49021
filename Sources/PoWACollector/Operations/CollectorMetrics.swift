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
/// that removes it.
///
/// A server's metric objects are made once, when its worker starts, and kept: making one
/// looks it up in the registry, which at a thousand servers would cost more than a snapshot.
/// Durations are one histogram for all servers (a histogram per server would be a dozen
/// series each), with each server's last duration as a gauge.
public final class CollectorMetrics: Sendable {
    /// How a snapshot ended.
    public enum Outcome: String, Sendable, CaseIterable {
        case success, failed, timedOut = "timed_out"
    }

    let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private let servers = Mutex<[Int: ServerSeries]>([:])
    /// Whether the control channel holds its repository session.
    private let repositoryUp = Atomic<Bool>(false)

    private let snapshotDuration: CoreMetrics.Timer
    private let takeSnapshotDuration: CoreMetrics.Timer
    private let repositoryUpGauge: CoreMetrics.Gauge
    private let slotsInUse: CoreMetrics.Gauge
    private let slotsWaiting: CoreMetrics.Gauge

    /// The metric objects of one server.
    private final class ServerSeries: Sendable {
        let values: [String]
        let snapshots: [Outcome: CoreMetrics.Counter]
        let lastDuration: CoreMetrics.Gauge
        let lastSuccess: CoreMetrics.Gauge
        let statuses: [WorkerStatus: CoreMetrics.Gauge]
        /// By source: rows and bytes.
        let sources = Mutex<[String: (rows: CoreMetrics.Counter, bytes: CoreMetrics.Counter)]>([:])
        private let labels: [(String, String)]
        private let factory: PrometheusMetricsFactory

        init(_ server: RemoteServer, factory: PrometheusMetricsFactory) {
            let labels = [("server", server.name(useAlias: true)), ("srvid", "\(server.id)")]
            self.labels = labels
            self.factory = factory
            values = labels.map(\.1)
            snapshots = Dictionary(
                uniqueKeysWithValues: Outcome.allCases.map { outcome in
                    (
                        outcome,
                        CoreMetrics.Counter(
                            label: "powa_collector_snapshots_total", dimensions: labels + [("outcome", outcome.rawValue)],
                            factory: factory)
                    )
                })
            lastDuration = CoreMetrics.Gauge(
                label: "powa_collector_last_snapshot_duration_seconds", dimensions: labels, factory: factory)
            lastSuccess = CoreMetrics.Gauge(
                label: "powa_collector_last_success_timestamp_seconds", dimensions: labels, factory: factory)
            statuses = Dictionary(
                uniqueKeysWithValues: WorkerStatus.allCases.map { status in
                    (
                        status,
                        CoreMetrics.Gauge(
                            label: "powa_collector_worker_status", dimensions: labels + [("status", status.rawValue)],
                            factory: factory)
                    )
                })
        }

        func source(_ name: String) -> (rows: CoreMetrics.Counter, bytes: CoreMetrics.Counter) {
            sources.withLock { sources in
                if let counters = sources[name] { return counters }
                let dimensions = labels + [("source", name)]
                let counters = (
                    CoreMetrics.Counter(label: "powa_collector_rows_copied_total", dimensions: dimensions, factory: factory),
                    CoreMetrics.Counter(label: "powa_collector_bytes_copied_total", dimensions: dimensions, factory: factory)
                )
                sources[name] = counters
                return counters
            }
        }

        func destroy() {
            snapshots.values.forEach { $0.destroy() }
            lastDuration.destroy()
            lastSuccess.destroy()
            statuses.values.forEach { $0.destroy() }
            for counters in sources.withLock({ Array($0.values) }) {
                counters.rows.destroy()
                counters.bytes.destroy()
            }
        }
    }

    public init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        let buckets: [Duration] = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120].map { .milliseconds(Int($0 * 1000)) }
        factory.durationHistogramBuckets = [
            "powa_collector_snapshot_duration_seconds": buckets,
            "powa_collector_repository_take_snapshot_duration_seconds": buckets,
        ]
        self.factory = factory
        snapshotDuration = CoreMetrics.Timer(label: "powa_collector_snapshot_duration_seconds", factory: factory)
        takeSnapshotDuration = CoreMetrics.Timer(
            label: "powa_collector_repository_take_snapshot_duration_seconds", factory: factory)
        repositoryUpGauge = CoreMetrics.Gauge(label: "powa_collector_repository_up", factory: factory)
        slotsInUse = CoreMetrics.Gauge(label: "powa_collector_snapshot_slots_in_use", factory: factory)
        slotsWaiting = CoreMetrics.Gauge(label: "powa_collector_snapshot_slots_waiting", factory: factory)
        CoreMetrics.Gauge(label: "powa_collector_info", dimensions: [("version", Collector.version)], factory: factory).record(1)
        CoreMetrics.Gauge(label: "powa_collector_start_time_seconds", factory: factory).record(Date().timeIntervalSince1970)
    }

    // MARK: Events

    /// A worker started: its server's metric objects (its status is then scraped). A server
    /// renamed loses the series of its old name.
    func workerStarted(_ server: RemoteServer) {
        _ = series(server)
    }

    /// The metric objects of `server`, made on first use.
    private func series(_ server: RemoteServer) -> ServerSeries {
        let (series, stale) = servers.withLock { servers -> (ServerSeries, ServerSeries?) in
            let values = [server.name(useAlias: true), "\(server.id)"]
            if let current = servers[server.id], current.values == values { return (current, nil) }
            let fresh = ServerSeries(server, factory: factory)
            let stale = servers.updateValue(fresh, forKey: server.id)
            return (fresh, stale)
        }
        stale?.destroy()
        return series
    }

    func snapshotEnded(_ server: RemoteServer, outcome: Outcome, duration: Duration) {
        let series = series(server)
        series.snapshots[outcome]?.increment()
        series.lastDuration.record(duration.secondsValue)
        snapshotDuration.recordNanoseconds(Int64(duration.secondsValue * 1e9))
        if outcome == .success { series.lastSuccess.record(Date().timeIntervalSince1970) }
    }

    func sourceCopied(_ server: RemoteServer, source: String, rows: Int, bytes: Int) {
        let counters = series(server).source(source)
        counters.rows.increment(by: rows)
        counters.bytes.increment(by: bytes)
    }

    func takeSnapshotDuration(_ duration: Duration) {
        takeSnapshotDuration.recordNanoseconds(Int64(duration.secondsValue * 1e9))
    }

    func controlRequest(command: String, status: ControlReply.Status) {
        let known = ["RELOAD", "WORKERS_STATUS", "FORCE_SNAPSHOT", "REFRESH_DB_CAT"]
        CoreMetrics.Counter(
            label: "powa_collector_control_requests_total",
            dimensions: [("command", known.contains(command) ? command : "other"), ("status", status.rawValue)],
            factory: factory
        ).increment()
    }

    func reloaded(success: Bool) {
        CoreMetrics.Counter(
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
        let (current, gone) = servers.withLock { servers -> ([Int: ServerSeries], [ServerSeries]) in
            let ids = servers.keys.filter { statuses[$0] == nil }
            return (servers, ids.compactMap { servers.removeValue(forKey: $0) })
        }
        for series in gone { series.destroy() }
        for (id, status) in statuses {
            guard let series = current[id] else { continue }
            for (candidate, gauge) in series.statuses { gauge.record(candidate == status ? 1 : 0) }
        }
        let slots = limiter?.usage() ?? (inUse: 0, waiting: 0)
        repositoryUpGauge.record(isRepositoryUp ? 1 : 0)
        slotsInUse.record(slots.inUse)
        slotsWaiting.record(slots.waiting)
        return registry.emitToBuffer()
    }
}
