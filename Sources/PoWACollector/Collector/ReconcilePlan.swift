/// What a reload does to the workers, decided from what runs and what is wanted, before
/// anything is done: pure, so that every case is tested without a server, and so that the
/// fleet only carries the plan out.
struct ReconcilePlan: Equatable {
    /// A running worker, as the plan sees it: the server and the settings it was started with.
    struct Worker {
        let server: RemoteServer
        let settings: CollectorConfiguration
    }

    /// Which of the active servers this collector may run (in a fleet, those it owns).
    enum Ownership: Equatable {
        /// Every active server (no fleet: the unit tests' default).
        case all
        /// These servers only; the workers of the others are retired.
        case owned(Set<Int>)
        /// This collector is no member now: what runs keeps running, nothing new starts.
        case keepRunning

        func allows(_ serverID: Int, running: Bool) -> Bool {
            switch self {
            case .all: true
            case .owned(let servers): servers.contains(serverID)
            case .keepRunning: running
            }
        }
    }

    /// A worker to stop, and why.
    struct Stop: Equatable {
        let serverID: Int
        /// The server stays (restarted with new settings): its board entry is kept, so that
        /// WORKERS_STATUS never misses it.
        let restarts: Bool
        /// The server went to another member of the fleet: the worker finishes the snapshot it
        /// may be taking before it stops (the new owner takes the next one).
        var retires = false
        var reason: String {
            restarts
                ? "settings changed"
                : retires ? "now snapshotted by another collector" : "removed, deactivated or unusable in powa_servers"
        }
    }

    /// Stopped first, by server id.
    var stops: [Stop] = []
    /// Started after the stops, by server id: new servers and restarted ones.
    var starts: [RemoteServer] = []
    /// Workers left running, asked to re-check their versions.
    var rechecks: [Int] = []
    /// The new number of snapshot slots, when it changed (every worker then restarts).
    var slots: Int?

    /// The plan that turns `running` into one worker per active server of `servers`, run with
    /// `configuration`. A server listed twice counts once (its first row).
    init(
        running: [Int: Worker], servers: [RemoteServer], ownership: Ownership = .all,
        configuration: CollectorConfiguration, slots current: Int
    ) {
        var wanted: [Int: RemoteServer] = [:]
        for server in servers where server.isActive && wanted[server.id] == nil { wanted[server.id] = server }
        for (id, worker) in running {
            guard let server = wanted[id] else {
                stops.append(Stop(serverID: id, restarts: false))
                continue
            }
            guard ownership.allows(id, running: true) else {
                stops.append(Stop(serverID: id, restarts: false, retires: true))
                wanted[id] = nil
                continue
            }
            if server.connectionSettings != worker.server.connectionSettings
                || server.frequency != worker.server.frequency
                || server.alias != worker.server.alias
                || configuration.serverOptions.options(for: server)
                    != worker.settings.serverOptions.options(for: worker.server)
                || !configuration.sameWorkerSettings(as: worker.settings)
            {
                stops.append(Stop(serverID: id, restarts: true))
            } else {
                rechecks.append(id)
            }
        }
        stops.sort { $0.serverID < $1.serverID }
        rechecks.sort()
        let kept = Set(rechecks)
        starts = wanted.values.filter {
            !kept.contains($0.id) && ownership.allows($0.id, running: running[$0.id] != nil)
        }.sorted { $0.id < $1.id }
        if configuration.maxConcurrentSnapshots != current { slots = configuration.maxConcurrentSnapshots }
    }
}

extension CollectorConfiguration {
    /// Whether two configurations run workers the same way (only the log settings may differ).
    func sameWorkerSettings(as other: CollectorConfiguration) -> Bool {
        var mine = self
        mine.debug = other.debug
        mine.logFormat = other.logFormat
        mine.httpListen = other.httpListen
        // Compared server by server: a change for one server restarts its worker only.
        mine.serverOptions = other.serverOptions
        return mine == other
    }
}
