import Foundation
import Glibc

/// Child processes of a benchmark: the shell pipelines it compares with, re-executions of this
/// binary (so that a measurement is not polluted by the harness), and the collector daemons it
/// measures.
enum ChildProcess {
    struct Outcome: Sendable {
        /// The wait status from waitpid (for a pipeline: the first one that failed, else the last).
        let status: Int32
        let standardOutput: String
        let standardError: String
        /// From just before posix_spawn to just after waitpid.
        let elapsed: Duration
        /// CPU seconds of the child and every descendant it waited for (wait4's rusage), summed
        /// over the processes of a pipeline.
        var cpu = CPUTime()
        /// The largest peak RSS (ru_maxrss, kB) among those processes.
        var peakRSSKB = 0

        var succeeded: Bool { ChildProcess.succeeded(status) }
    }

    /// User and system CPU seconds.
    struct CPUTime: Sendable {
        var user = 0.0
        var system = 0.0
        var total: Double { user + system }

        init(user: Double = 0, system: Double = 0) {
            self.user = user
            self.system = system
        }

        init(_ usage: rusage) {
            user = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
            system = Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        }

        static func + (left: CPUTime, right: CPUTime) -> CPUTime {
            CPUTime(user: left.user + right.user, system: left.system + right.system)
        }
    }

    /// Whether a wait status says the process exited with status 0.
    static func succeeded(_ status: Int32) -> Bool { (status & 0x7f) == 0 && ((status >> 8) & 0xff) == 0 }

    /// A wait status in words: "exit 1", "signal 9".
    static func describe(_ status: Int32) -> String {
        (status & 0x7f) == 0 ? "exit \((status >> 8) & 0xff)" : "signal \(status & 0x7f)"
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
        try await pipeline([[path] + arguments], environment: environment)
    }

    /// `run`, on the calling thread: for a quick command at a sampling point, where an await
    /// would move the sample.
    static func runNow(_ path: String, _ arguments: [String]) throws -> Outcome {
        try runBlocking([[path] + arguments], environment: [:])
    }

    /// Runs a shell command line with bash, `pipefail` set (a pipeline fails if any part does).
    static func shell(_ commandLine: String, environment: [String: String] = [:]) async throws -> Outcome {
        try await run("/bin/bash", ["-o", "pipefail", "-c", commandLine], environment: environment)
    }

    /// Runs `commands` (each an executable path then its arguments) as a pipeline, each one's
    /// stdout into the next one's stdin, without a shell: the rusage is exactly theirs. The
    /// first reads /dev/null; the last one's stdout and everyone's stderr are captured.
    static func pipeline(_ commands: [[String]], environment: [String: String] = [:]) async throws -> Outcome {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Outcome, any Error>) in
            let thread = Thread {
                do {
                    continuation.resume(returning: try runBlocking(commands, environment: environment))
                } catch {
                    continuation.resume(throwing: error)
                }
            }
            thread.start()
        }
    }

    private static func runBlocking(_ commands: [[String]], environment: [String: String]) throws -> Outcome {
        precondition(!commands.isEmpty && commands.allSatisfy { !$0.isEmpty })
        let stem = "/tmp/powa-bench-\(getpid())-\(UUID().uuidString)"
        let outputPath = stem + ".out"
        let errorPath = stem + ".err"
        defer {
            unlink(outputPath)
            unlink(errorPath)
        }
        let envp = environmentBlock(environment)
        defer { envp.forEach { free($0) } }
        // pipes[i] connects command i to command i + 1. Created and spawned under a lock: a
        // pipe end is close-on-exec only once fcntl has run, and a concurrent spawn in between
        // would leak it into another pipeline (whose reader would then wait for that one).
        spawnLock.lock()
        var pipes: [(read: Int32, write: Int32)] = []
        for _ in 1..<commands.count {
            var fds: [Int32] = [0, 0]
            guard pipe(&fds) == 0 else {
                spawnLock.unlock()
                throw BenchError("pipe failed: errno \(errno)")
            }
            // Close-on-exec: each child gets only the ends dup2'ed onto its stdin or stdout.
            _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
            pipes.append((fds[0], fds[1]))
        }
        let clock = ContinuousClock()
        let start = clock.now
        var pids: [pid_t] = []
        var spawnError: (any Error)?
        for (index, command) in commands.enumerated() {
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            if index == 0 {
                posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            } else {
                posix_spawn_file_actions_adddup2(&actions, pipes[index - 1].read, 0)
            }
            if index == commands.count - 1 {
                posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            } else {
                posix_spawn_file_actions_adddup2(&actions, pipes[index].write, 1)
            }
            posix_spawn_file_actions_addopen(&actions, 2, errorPath, O_WRONLY | O_CREAT | O_APPEND, 0o600)
            let argv = command.map { strdup($0) } + [nil]
            defer { argv.forEach { free($0) } }
            var pid: pid_t = 0
            let spawned = withCleanSignals { posix_spawn(&pid, command[0], &actions, &$0, argv, envp) }
            guard spawned == 0 else {
                spawnError = BenchError("could not start \(command[0]): errno \(spawned)")
                break
            }
            pids.append(pid)
        }
        for pipe in pipes {
            close(pipe.read)
            close(pipe.write)
        }
        spawnLock.unlock()
        var status: Int32 = 0
        var cpu = CPUTime()
        var peak = 0
        for pid in pids {
            var childStatus: Int32 = 0
            var usage = rusage()
            while wait4(pid, &childStatus, 0, &usage) == -1 && errno == EINTR {}
            cpu = cpu + CPUTime(usage)
            peak = max(peak, Int(usage.ru_maxrss))
            if succeeded(status) { status = childStatus }
        }
        let elapsed = start.duration(to: clock.now)
        if let spawnError { throw spawnError }
        return Outcome(
            status: status,
            standardOutput: (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "",
            standardError: (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "",
            elapsed: elapsed,
            cpu: cpu,
            peakRSSKB: peak
        )
    }

    /// Spawn attributes that give a child an empty signal mask and the default disposition of
    /// the usual signals: a task's thread blocks nearly every signal, and posix_spawn would pass
    /// that mask on (a Python collector would then never see its SIGTERM).
    static func withCleanSignals<Result>(_ body: (inout posix_spawnattr_t) -> Result) -> Result {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGHUP, SIGINT, SIGQUIT, SIGPIPE, SIGTERM, SIGUSR1, SIGUSR2, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        return body(&attributes)
    }

    /// Serialises spawning (see `runBlocking`).
    static let spawnLock = NSLock()

    /// This process's environment with `overrides`, as a NULL-terminated block to free.
    fileprivate static func environmentBlock(_ overrides: [String: String]) -> [UnsafeMutablePointer<CChar>?] {
        let environment = ProcessInfo.processInfo.environment.merging(overrides) { $1 }
        return environment.map { strdup("\($0)=\($1)") } + [nil]
    }
}

/// A long-running child (a collector daemon): started in a directory of its own with its
/// output in files, measured through /proc while it runs, stopped with a signal.
final class Daemon: Sendable {
    let pid: pid_t
    let standardOutputPath: String
    let standardErrorPath: String

    /// Starts `command` in `directory` (stdin /dev/null; stdout and stderr appended to the
    /// given files), with this process's environment plus `environment`.
    init(
        _ command: [String], directory: String, environment: [String: String],
        standardOutputPath: String, standardErrorPath: String
    ) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, standardOutputPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, standardErrorPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        // `env -C` changes directory and execs the command: the pid is the command's.
        let argv = (["/usr/bin/env", "-C", directory] + command).map { strdup($0) } + [nil]
        let envp = ChildProcess.environmentBlock(environment)
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        ChildProcess.spawnLock.lock()
        let spawned = ChildProcess.withCleanSignals { posix_spawn(&pid, "/usr/bin/env", &actions, &$0, argv, envp) }
        ChildProcess.spawnLock.unlock()
        guard spawned == 0 else { throw BenchError("could not start \(command[0]): errno \(spawned)") }
        self.pid = pid
        self.standardOutputPath = standardOutputPath
        self.standardErrorPath = standardErrorPath
    }

    /// Whether the process has not exited yet (a zombie counts as exited).
    var isRunning: Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return false }
        let state = stat[stat.index(after: close)...].split(separator: " ").first
        return state != "Z" && state != "X"
    }

    /// Sends `signal`, waits up to `timeout` for the exit (then SIGKILL), and returns the wait
    /// status with the rusage of the whole life of the process.
    func stop(signal: Int32 = SIGTERM, timeout: Duration = .seconds(60)) async -> (status: Int32, cpu: ChildProcess.CPUTime) {
        kill(pid, signal)
        let deadline = ContinuousClock.now + timeout
        var killed = false
        while true {
            var status: Int32 = 0
            var usage = rusage()
            let waited = wait4(pid, &status, WNOHANG, &usage)
            if waited == pid { return (status, ChildProcess.CPUTime(usage)) }
            if waited == -1 && errno != EINTR { return (-1, ChildProcess.CPUTime()) }
            if !killed && ContinuousClock.now >= deadline {
                note("pid \(pid) did not stop within \(timeout): SIGKILL")
                kill(pid, SIGKILL)
                killed = true
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    /// The daemon's standard error so far.
    func standardError() -> String {
        (try? String(contentsOfFile: standardErrorPath, encoding: .utf8)) ?? ""
    }
}
