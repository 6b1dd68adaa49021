import Foundation

/// The physical floor of a snapshot: two psql processes and a pipe, with nothing of a collector.
/// For each server and at the same frequency and phases as the collectors (drift-free, servers
/// evenly spread over the period), one psql on the remote runs `COPY (SELECT srvid, * FROM <source>(0)) TO STDOUT`
/// for every snapshot source of the server, a `\.` line after each, then the cleanups; its
/// output is piped into one psql on the repository that, in one transaction (`-1`), runs
/// `\copy <source>_tmp FROM pstdin` for each source (each ends at its `\.`) and then
/// `powa_take_snapshot(srvid)`. The same sources, in the same order, as the collectors read
/// from `powa_functions`.
struct PsqlFloor {
    let repository: RunRepository
    let psql: String
    let seconds: Double

    /// What the pipelines did: their wall times, CPU (both psql processes, from wait4) and
    /// peak RSS, and their failures.
    struct Measurement: Sendable {
        var wallTimes: [Double] = []
        var cpu = ChildProcess.CPUTime()
        var peakRSSKB = 0
        var failures: [String] = []
        var startClock = 0.0
        var endClock = 0.0
    }

    func run(label: String) async throws -> Measurement {
        let directory = "/tmp/powa-bench-run-\(label)"
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let connection = try await BenchBed.connect(repository.connectionString)
        var pipelines: [(server: RegisteredServer, command: [[String]])] = []
        for server in repository.servers {
            let sources = try await connection.query(
                """
                SELECT query_source, query_cleanup
                FROM public.powa_functions
                WHERE operation = 'snapshot' AND enabled AND srvid = $1 AND query_source IS NOT NULL
                ORDER BY priority, module, query_source
                """, [String(server.srvid)]
            ).rows.map { (source: $0[0] ?? "", cleanup: $0[1]) }
            var remoteScript = ""
            var repositoryScript = ""
            for source in sources {
                remoteScript += "COPY (SELECT \(server.srvid), * FROM public.\(source.source)(0)) TO STDOUT;\n"
                remoteScript += "\\echo '\\\\.'\n"
                repositoryScript += "\\copy public.\(source.source)_tmp FROM pstdin\n"
            }
            remoteScript += "\\o /dev/null\n"
            for cleanup in sources.compactMap(\.cleanup) where !cleanup.isEmpty { remoteScript += cleanup + ";\n" }
            repositoryScript += "SELECT public.powa_take_snapshot(\(server.srvid));\n"
            let remotePath = "\(directory)/remote-\(server.srvid).sql"
            let repositoryPath = "\(directory)/repository-\(server.srvid).sql"
            try remoteScript.write(toFile: remotePath, atomically: true, encoding: .utf8)
            try repositoryScript.write(toFile: repositoryPath, atomically: true, encoding: .utf8)
            let common = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres"]
            pipelines.append(
                (
                    server,
                    [
                        [psql] + common + ["-p", String(server.port), "-d", "powa", "-f", remotePath],
                        [psql] + common + ["-1", "-p", String(repository.bed.repositoryPort), "-d", repository.database]
                            + ["-f", repositoryPath, "-o", "/dev/null"],
                    ]
                ))
        }
        connection.close()
        note("\(label): psql | psql pipelines for \(Int(seconds)) s (scripts in \(directory))")

        let measurement = Locked(Measurement())
        let startClock = try await repository.clock()
        let frequency = Duration.seconds(repository.frequency)
        let start = ContinuousClock.now
        let end = start + .seconds(seconds)
        let offsets = RunRepository.evenOffsets(count: pipelines.count, frequency: repository.frequency)
        await withTaskGroup(of: Void.self) { group in
            for (index, pipeline) in pipelines.enumerated() {
                group.addTask {
                    // Drift-free: slot k at start + offset + k * frequency; an overrun skips
                    // the slots it missed, as the collectors do.
                    let origin = start + .seconds(offsets[index])
                    var slot = 0
                    while origin + frequency * slot < end {
                        try? await Task.sleep(until: origin + frequency * slot, clock: .continuous)
                        do {
                            let outcome = try await ChildProcess.pipeline(pipeline.command)
                            measurement.withLock { measurement in
                                measurement.cpu = measurement.cpu + outcome.cpu
                                measurement.peakRSSKB = max(measurement.peakRSSKB, outcome.peakRSSKB)
                                if outcome.succeeded {
                                    measurement.wallTimes.append(outcome.elapsed.seconds)
                                } else {
                                    measurement.failures.append(
                                        "server \(pipeline.server.srvid): \(ChildProcess.describe(outcome.status)): "
                                            + outcome.standardError.prefix(500))
                                }
                            }
                        } catch {
                            measurement.withLock { $0.failures.append("server \(pipeline.server.srvid): \(error)") }
                        }
                        slot += 1
                        let now = ContinuousClock.now
                        while origin + frequency * (slot + 1) <= now { slot += 1 }
                    }
                }
            }
        }
        let endClock = try await repository.clock()
        return measurement.withLock { measurement in
            measurement.startClock = startClock
            measurement.endClock = endClock
            return measurement
        }
    }
}
