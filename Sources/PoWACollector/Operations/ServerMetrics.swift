import CoreMetrics
import Prometheus
import Synchronization

/// The metric objects of one server, in a Prometheus registry of its own, and their text.
///
/// A server's series change when one of its snapshots ends (about once a period) or its
/// worker's status does: its text is emitted again then, by the worker, so that a scrape
/// only merges every server's text family by family (`RegistryText`), whatever its interval.
/// One registry for all servers would emit every series at every scrape (about 16 ms of CPU
/// at a thousand servers), and registering a series in it copies the whole family, which at a
/// thousand servers costs more at start-up than the snapshots.
final class ServerMetrics: Sendable {
    /// The metric families of a server, in the order a scrape writes them.
    enum Family: String, CaseIterable {
        case snapshots = "powa_collector_snapshots_total"
        case lastDuration = "powa_collector_last_snapshot_duration_seconds"
        case lastSuccess = "powa_collector_last_success_timestamp_seconds"
        case workerStatus = "powa_collector_worker_status"
        case rowsCopied = "powa_collector_rows_copied_total"
        case bytesCopied = "powa_collector_bytes_copied_total"

        /// The names in UTF-8, as `RegistryText` takes them.
        static let names = allCases.map { Array($0.rawValue.utf8) }
    }

    /// The `server` and `srvid` label values.
    let values: [String]
    private let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private let labels: [(String, String)]
    private let snapshots: [CollectorMetrics.Outcome: CoreMetrics.Counter]
    private let lastDuration: CoreMetrics.Gauge
    private let lastSuccess: CoreMetrics.Gauge
    private let statuses: [WorkerStatus: CoreMetrics.Gauge]
    /// By source: rows and bytes.
    private let sources = Mutex<[String: (rows: CoreMetrics.Counter, bytes: CoreMetrics.Counter)]>([:])
    /// The status the gauges show.
    private let shownStatus = Mutex<WorkerStatus?>(nil)
    /// Set after a value changed, cleared before the text is emitted again.
    private let changed = Atomic<Bool>(true)
    private let text = Mutex<RegistryText?>(nil)

    /// The labels of every series of `server`.
    static func labels(of server: RemoteServer) -> [(String, String)] {
        [("server", server.name(useAlias: true)), ("srvid", "\(server.id)")]
    }

    init(_ server: RemoteServer) {
        let labels = Self.labels(of: server)
        let factory = PrometheusMetricsFactory(registry: registry)
        self.labels = labels
        self.factory = factory
        values = labels.map(\.1)
        snapshots = Dictionary(
            uniqueKeysWithValues: CollectorMetrics.Outcome.allCases.map { outcome in
                (
                    outcome,
                    CoreMetrics.Counter(
                        label: Family.snapshots.rawValue, dimensions: labels + [("outcome", outcome.rawValue)],
                        factory: factory)
                )
            })
        lastDuration = CoreMetrics.Gauge(label: Family.lastDuration.rawValue, dimensions: labels, factory: factory)
        lastSuccess = CoreMetrics.Gauge(label: Family.lastSuccess.rawValue, dimensions: labels, factory: factory)
        statuses = Dictionary(
            uniqueKeysWithValues: WorkerStatus.ofWorkers.map { status in
                (
                    status,
                    CoreMetrics.Gauge(
                        label: Family.workerStatus.rawValue, dimensions: labels + [("status", status.rawValue)],
                        factory: factory)
                )
            })
    }

    /// Counts a snapshot and emits the text again (with the rows and bytes its sources copied).
    func snapshotEnded(outcome: CollectorMetrics.Outcome, seconds: Double, at epochSeconds: Double) {
        snapshots[outcome]?.increment()
        lastDuration.record(seconds)
        if outcome == .success { lastSuccess.record(epochSeconds) }
        changed.store(true, ordering: .releasing)
        _ = currentText()
    }

    func sourceCopied(_ source: String, rows: Int, bytes: Int) {
        let counters = sources.withLock { sources in
            if let counters = sources[source] { return counters }
            let dimensions = labels + [("source", source)]
            let counters = (
                CoreMetrics.Counter(label: Family.rowsCopied.rawValue, dimensions: dimensions, factory: factory),
                CoreMetrics.Counter(label: Family.bytesCopied.rawValue, dimensions: dimensions, factory: factory)
            )
            sources[source] = counters
            return counters
        }
        counters.rows.increment(by: rows)
        counters.bytes.increment(by: bytes)
        changed.store(true, ordering: .releasing)
    }

    /// Sets the status gauges (1 for `status`, 0 for the others) unless they show it already;
    /// with `emit`, emits the text again when they did not.
    func show(_ status: WorkerStatus, emit: Bool) {
        let fresh = shownStatus.withLock { shown in
            guard shown != status else { return false }
            shown = status
            for (candidate, gauge) in statuses { gauge.record(candidate == status ? 1 : 0) }
            return true
        }
        guard fresh else { return }
        changed.store(true, ordering: .releasing)
        if emit { _ = currentText() }
    }

    /// The registry's text, emitted again when a value changed since it last was.
    func currentText() -> RegistryText {
        text.withLock { text in
            // Cleared before the values are read: a change made while they are is emitted
            // again next time.
            if !changed.exchange(false, ordering: .acquiringAndReleasing), let text { return text }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(text?.bytes.count ?? 4096)
            registry.emit(into: &bytes)
            let fresh = RegistryText(bytes, families: Family.names)
            text = fresh
            return fresh
        }
    }
}
