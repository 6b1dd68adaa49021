import ArgumentParser
import PostgresClient

/// `powa-bench copy-pipe-once` (hidden): one Swift COPY pipe and nothing else, so that
/// `copy-pipe` can measure the peak memory of the pipe in a process of its own, unpolluted by
/// the harness. Prints `key=value` lines: the RSS at start, once connected, and at the end,
/// the peak (VmHWM) before and after the pipe, its anonymous and file-backed parts (RssAnon,
/// RssFile), the rows stored and the pipe's seconds.
struct CopyPipeOnce: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "copy-pipe-once",
        abstract: "Run one Swift COPY pipe and print this process's memory figures.",
        shouldDisplay: false
    )

    @Option(help: "Connection string of the source (COPY TO STDOUT).")
    var source: String

    @Option(help: "Connection string of the destination (COPY FROM STDIN).")
    var destination: String

    @Option(name: .customLong("copy-out"), help: "The COPY ... TO STDOUT statement.")
    var copyOut: String

    @Option(name: .customLong("copy-in"), help: "The COPY ... FROM STDIN statement.")
    var copyIn: String

    @Option(name: .customLong("batch-size"), help: "pipeCopy's batch size in bytes.")
    var batchSize = 256 * 1024

    mutating func run() async throws {
        let atStart = try ProcessMemory.current()
        let sourceConnection = try await BenchBed.connect(source)
        let destinationConnection = try await BenchBed.connect(destination)
        let connected = try ProcessMemory.current()
        let clock = ContinuousClock()
        let start = clock.now
        let rows = try await PostgresConnection.pipeCopy(
            from: sourceConnection, copyOut, to: destinationConnection, copyIn, batchSize: batchSize)
        let elapsed = start.duration(to: clock.now)
        let atEnd = try ProcessMemory.current()
        sourceConnection.close()
        destinationConnection.close()
        print("rss_start_kb=\(atStart.residentKB)")
        print("rss_connected_kb=\(connected.residentKB)")
        print("hwm_connected_kb=\(connected.peakResidentKB)")
        print("rss_end_kb=\(atEnd.residentKB)")
        print("hwm_kb=\(atEnd.peakResidentKB)")
        print("rss_anon_start_kb=\(atStart.anonymousKB)")
        print("rss_anon_end_kb=\(atEnd.anonymousKB)")
        print("rss_file_end_kb=\(atEnd.fileKB)")
        print("rows=\(rows)")
        print("seconds=\(elapsed.seconds)")
    }

    /// What the parent reads back.
    struct Report {
        let startKB: Int
        let connectedKB: Int
        let peakConnectedKB: Int
        let endKB: Int
        let peakKB: Int
        let anonymousStartKB: Int
        let anonymousEndKB: Int
        let fileEndKB: Int
        let rows: Int
        let seconds: Double

        init(parsing output: String) throws {
            var values: [String: String] = [:]
            for line in output.split(separator: "\n") {
                let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
                if parts.count == 2 { values[parts[0]] = parts[1] }
            }
            func int(_ key: String) throws -> Int {
                guard let value = values[key].flatMap({ Int($0) }) else {
                    throw BenchError("copy-pipe-once printed no \(key): \(output)")
                }
                return value
            }
            startKB = try int("rss_start_kb")
            connectedKB = try int("rss_connected_kb")
            peakConnectedKB = try int("hwm_connected_kb")
            endKB = try int("rss_end_kb")
            peakKB = try int("hwm_kb")
            anonymousStartKB = try int("rss_anon_start_kb")
            anonymousEndKB = try int("rss_anon_end_kb")
            fileEndKB = try int("rss_file_end_kb")
            rows = try int("rows")
            guard let seconds = values["seconds"].flatMap({ Double($0) }) else {
                throw BenchError("copy-pipe-once printed no seconds: \(output)")
            }
            self.seconds = seconds
        }
    }
}
