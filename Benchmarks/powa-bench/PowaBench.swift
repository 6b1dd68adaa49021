import ArgumentParser

/// `powa-bench`: benchmarks of powa-collector, run by hand against a private test bed
/// (never as timed tests). One subcommand per benchmark, each in a file of its own; the
/// helpers they share (test bed, child processes, memory, statistics) are in `Support/`.
@main
struct PowaBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "powa-bench",
        abstract: "Benchmarks of powa-collector against a private PostgreSQL test bed.",
        subcommands: [
            CopyPipe.self,
            CopyPipeOnce.self,
            CollectorBench.self,
            ScaleBench.self,
            FleetBench.self,
            MetricsBench.self,
            SoakBench.self,
            SpoolBench.self,
        ]
    )
}
