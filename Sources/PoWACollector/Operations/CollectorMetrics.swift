import CoreMetrics
import Foundation
import Prometheus
import Synchronization

/// The collector's metrics, through swift-metrics into Prometheus registries of their own
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
/// Each server's series live in a registry of their own (`ServerMetrics`), made when its
/// worker starts and kept, whose text is emitted again when a snapshot ends or the worker's
/// status changes: a scrape emits the daemon-wide registry and merges the servers' texts
/// (emitting again only those whose status it finds changed). Durations are one
/// histogram for all servers (a histogram per server would be a dozen series each), with each
/// server's last duration as a gauge.
public final class CollectorMetrics: Sendable {
    /// How a snapshot ended.
    public enum Outcome: String, Sendable, CaseIterable {
        case success, failed, timedOut = "timed_out"
    }

    /// The daemon-wide series.
    let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private let servers = Mutex<[Int: ServerMetrics]>([:])
    /// Whether the control channel holds its repository session.
    private let repositoryUp = Atomic<Bool>(false)
    /// The size of the last scrape's text, to reserve as much for the next one.
    private let lastScrapeBytes = Atomic<Int>(0)

    private let snapshotDuration: CoreMetrics.Timer
    private let takeSnapshotDuration: CoreMetrics.Timer
    private let repositoryUpGauge: CoreMetrics.Gauge
    private let slotsInUse: CoreMetrics.Gauge
    private let slotsWaiting: CoreMetrics.Gauge
    /// The fleet of collectors sharing the repository, as this one sees it.
    private let fleetMembers: CoreMetrics.Gauge
    private let fleetLeader: CoreMetrics.Gauge
    private let fleetMemberID: CoreMetrics.Gauge
    private let fleetOwnedServers: CoreMetrics.Gauge
    /// The spool (`SnapshotSpool`): what it holds now, and what went in and out of it.
    private let spoolSnapshots: CoreMetrics.Gauge
    private let spoolBytes: CoreMetrics.Gauge
    private let spooledSnapshots: CoreMetrics.Counter
    private let spooledBytes: CoreMetrics.Counter
    private let spoolLanded: CoreMetrics.Counter

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
        fleetMembers = CoreMetrics.Gauge(label: "powa_collector_fleet_members", factory: factory)
        fleetLeader = CoreMetrics.Gauge(label: "powa_collector_fleet_leader", factory: factory)
        fleetMemberID = CoreMetrics.Gauge(label: "powa_collector_fleet_member_id", factory: factory)
        fleetOwnedServers = CoreMetrics.Gauge(label: "powa_collector_fleet_owned_servers", factory: factory)
        spoolSnapshots = CoreMetrics.Gauge(label: "powa_collector_spool_snapshots", factory: factory)
        spoolBytes = CoreMetrics.Gauge(label: "powa_collector_spool_bytes", factory: factory)
        spooledSnapshots = CoreMetrics.Counter(label: "powa_collector_spool_snapshots_spooled_total", factory: factory)
        spooledBytes = CoreMetrics.Counter(label: "powa_collector_spool_bytes_spooled_total", factory: factory)
        spoolLanded = CoreMetrics.Counter(label: "powa_collector_spool_snapshots_landed_total", factory: factory)
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
    private func series(_ server: RemoteServer) -> ServerMetrics {
        servers.withLock { servers in
            let values = ServerMetrics.labels(of: server).map(\.1)
            if let current = servers[server.id], current.values == values { return current }
            let fresh = ServerMetrics(server)
            servers[server.id] = fresh
            return fresh
        }
    }

    func snapshotEnded(_ server: RemoteServer, outcome: Outcome, duration: Duration) {
        series(server).snapshotEnded(
            outcome: outcome, seconds: duration.secondsValue, at: Date().timeIntervalSince1970)
        snapshotDuration.recordNanoseconds(Int64(duration.secondsValue * 1e9))
    }

    func sourceCopied(_ server: RemoteServer, source: String, rows: Int, bytes: Int) {
        series(server).sourceCopied(source, rows: rows, bytes: bytes)
    }

    /// A worker's status changed (the scrape reads every status from the board as well: this
    /// only spares it emitting the server's text again).
    func workerStatusChanged(_ server: RemoteServer, to status: WorkerStatus) {
        let series = servers.withLock { $0[server.id] }
        series?.show(status, emit: true)
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

    func snapshotSpooled(bytes: Int) {
        spooledSnapshots.increment()
        spooledBytes.increment(by: bytes)
    }

    func spooledSnapshotLanded() { spoolLanded.increment() }

    func spooledSnapshotsDropped(_ count: Int, reason: String) {
        CoreMetrics.Counter(
            label: "powa_collector_spool_snapshots_dropped_total", dimensions: [("reason", reason)], factory: factory
        ).increment(by: count)
    }

    func setRepositoryUp(_ up: Bool) { repositoryUp.store(up, ordering: .relaxed) }

    /// Whether the control channel holds its repository session.
    var isRepositoryUp: Bool { repositoryUp.load(ordering: .relaxed) }

    // MARK: Scrape

    /// The Prometheus text format of every metric, with the states read now from `board` and
    /// `limiter`: the daemon-wide series, then each server family, server after server by id.
    func scrape(
        board: WorkerBoard, limiter: SnapshotLimiter?, membership: FleetMembership? = nil, spool: SnapshotSpool? = nil
    ) -> [UInt8] {
        let statuses = board.statuses()
        let current = servers.withLock { servers -> [(id: Int, series: ServerMetrics)] in
            for id in servers.keys.filter({ statuses[$0] == nil }) { servers.removeValue(forKey: id) }
            return servers.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        }
        for (id, series) in current {
            if let status = statuses[id] { series.show(status, emit: false) }
        }
        let slots = limiter?.usage() ?? (inUse: 0, waiting: 0)
        repositoryUpGauge.record(isRepositoryUp ? 1 : 0)
        slotsInUse.record(slots.inUse)
        slotsWaiting.record(slots.waiting)
        if let membership {
            // (The per-server series are this collector's servers: which instance snapshots
            // which server is the scrape target's own label.)
            let view = membership.view
            fleetMembers.record(view.members.count)
            fleetLeader.record(membership.isLeader ? 1 : 0)
            fleetMemberID.record(membership.isMember ? membership.memberID : 0)
            fleetOwnedServers.record(membership.owned.count)
        }

        if let spool {
            let contents = spool.contents
            spoolSnapshots.record(contents.snapshots)
            spoolBytes.record(contents.bytes)
        }

        let texts = current.map { $0.series.currentText() }
        var output: [UInt8] = []
        output.reserveCapacity(lastScrapeBytes.load(ordering: .relaxed) + 4096)
        registry.emit(into: &output)
        RegistryText.merge(texts, families: ServerMetrics.Family.allCases.count, into: &output)
        lastScrapeBytes.store(output.count, ordering: .relaxed)
        return output
    }
}
