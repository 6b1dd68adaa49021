import ArgumentParser
import Foundation
import Logging
import PoWACollector

/// What the commands that talk to a running collector share: the session to the repository,
/// and failing with one line on stderr and exit code 1.
enum CommandSession {
    static func connect(_ configuration: CollectorConfiguration) async throws -> CollectorControl {
        var logger = Logger(label: "powa-collector")
        logger.logLevel = .error
        return try await run { try await CollectorControl.connect(configuration, logger: logger) }
    }

    /// `body`, its error turned into one line and exit code 1.
    static func run<Result>(_ body: () async throws -> Result) async throws -> Result {
        do {
            return try await body()
        } catch {
            fail("cannot reach the repository: \(error)")
        }
    }

    /// `--timeout`: seconds above 0, less than a day (`Duration` traps on NaN or infinity).
    static func validate(timeout: Double) throws {
        guard timeout > 0, timeout.isFinite, timeout < 86_400 else {
            throw ValidationError("--timeout must be a number of seconds above 0")
        }
    }

    static func noAnswer(_ timeout: Double) -> ExitCode {
        FileHandle.standardError.write(
            Data(
                "powa-collector: no collector answered within \(timeout) s: is one running against this repository?\n"
                    .utf8))
        return ExitCode(1)
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("powa-collector: \(message)\n".utf8))
        exit(1)
    }
}
