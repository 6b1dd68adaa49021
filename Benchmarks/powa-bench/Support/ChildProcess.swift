import Foundation
import Glibc

/// Child processes of a benchmark: the shell pipelines it compares with, and re-executions of
/// this binary (so that a measurement is not polluted by the harness).
enum ChildProcess {
    struct Outcome: Sendable {
        /// The wait status from waitpid.
        let status: Int32
        let standardOutput: String
        let standardError: String
        /// From just before posix_spawn to just after waitpid.
        let elapsed: Duration

        var succeeded: Bool { (status & 0x7f) == 0 && ((status >> 8) & 0xff) == 0 }
    }

    /// This process's executable, to re-execute it with a hidden subcommand.
    static func currentExecutable() throws -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard length > 0 else { throw BenchError("cannot read /proc/self/exe: errno \(errno)") }
        return String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Runs `path` with `arguments` (stdin /dev/null, stdout and stderr captured in files) on a
    /// thread of its own, and returns how it ended; throws only if it could not be started.
    static func run(_ path: String, _ arguments: [String], environment: [String: String] = [:]) async throws -> Outcome {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Outcome, any Error>) in
            let thread = Thread {
                do {
                    continuation.resume(returning: try runBlocking(path, arguments, environment: environment))
                } catch {
                    continuation.resume(throwing: error)
                }
            }
            thread.start()
        }
    }

    /// Runs a shell command line with bash, `pipefail` set (a pipeline fails if any part does).
    static func shell(_ commandLine: String, environment: [String: String] = [:]) async throws -> Outcome {
        try await run("/bin/bash", ["-o", "pipefail", "-c", commandLine], environment: environment)
    }

    private static func runBlocking(_ path: String, _ arguments: [String], environment: [String: String]) throws -> Outcome {
        let stem = "/tmp/powa-bench-\(getpid())-\(UUID().uuidString)"
        let outputPath = stem + ".out"
        let errorPath = stem + ".err"
        defer {
            unlink(outputPath)
            unlink(errorPath)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, errorPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let fullEnvironment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = fullEnvironment.map { strdup("\($0)=\($1)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        let clock = ContinuousClock()
        let start = clock.now
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, path, &actions, nil, argv, envp)
        guard spawned == 0 else { throw BenchError("could not start \(path): errno \(spawned)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let elapsed = start.duration(to: clock.now)
        return Outcome(
            status: status,
            standardOutput: (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "",
            standardError: (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "",
            elapsed: elapsed
        )
    }
}
