import ArgumentParser
import Foundation
import PoWACollector

/// `--config`, shared by every command: the same file reaches the same repository.
struct ConfigurationOptions: ParsableArguments {
    @Option(name: .long, help: "The configuration file to use instead of the search path.")
    var config: String?

    /// The configuration, or exit code 1 with one line on stderr saying what to fix.
    func load() throws -> CollectorConfiguration {
        do {
            return try ConfigurationFile.load(path: config).0
        } catch {
            FileHandle.standardError.write(Data("powa-collector: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
