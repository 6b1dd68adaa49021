import Foundation
import Glibc
import TestWaiting

/// A program started by a test (the built `powa-collector`), its output going to a file the
/// test can read at any time; stopped with a signal and awaited without blocking the pool.
public final class DaemonProcess: Sendable {
    public let pid: pid_t
    private let outputPath: String

    /// The `powa-collector` binary of this checkout's debug build.
    public static var collectorBinary: String {
        TestBed.packageRoot.appendingPathComponent(".build/debug/powa-collector").path
    }

    /// Starts `executable` with `arguments`, in `directory`, with extra environment variables.
    public init(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:],
        directory: String = "/tmp"
    ) throws {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw TestBedError(message: "\(executable) is missing: run `swift build` first")
        }
        outputPath = "/tmp/powa-daemon-\(UUID().uuidString).log"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        let fullEnvironment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let envp = fullEnvironment.map { strdup("\($0)=\($1)") } + [nil]
        defer { envp.forEach { free($0) } }
        // posix_spawn has no portable chdir: start through the shell's `cd`, then exec.
        // A child inherits the spawning thread's signal mask, and the concurrency pool's
        // threads block most signals: give it an empty mask and default handlers, or a SIGTERM
        // sent to it would stay pending forever.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let shellArguments = ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", directory, executable] + arguments
        let shellArgv = shellArguments.map { strdup($0) } + [nil]
        defer { shellArgv.forEach { free($0) } }
        let spawned = posix_spawn(&pid, "/bin/sh", &actions, &attributes, shellArgv, envp)
        guard spawned == 0 else { throw TestBedError(message: "could not start \(executable): errno \(spawned)") }
        self.pid = pid
    }

    /// Everything the program printed so far.
    public var output: String {
        (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
    }

    /// Sends a signal.
    public func signal(_ signal: Int32) {
        kill(pid, signal)
    }

    /// Waits for the program to exit and returns its exit code (128 + n when killed by signal n).
    public func wait() async -> Int32 {
        let pid = self.pid
        return await withCheckedContinuation { continuation in
            Thread {
                var status: Int32 = 0
                while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
                let signalNumber = status & 0x7f
                continuation.resume(returning: signalNumber == 0 ? (status >> 8) & 0xff : 128 + signalNumber)
            }.start()
        }
    }

    /// Waits for the program to exit within `timeout`; past it, kills it (SIGKILL) and returns
    /// nil, so that a daemon that should have stopped cannot hang the test.
    public func wait(orKillAfter timeout: Duration) async -> Int32? {
        let pid = self.pid
        let killer = Task {
            try await Task.sleep(for: timeout)
            kill(pid, SIGKILL)
        }
        let code = await wait()
        let killed = killer.isCancelled == false && code == 128 + SIGKILL
        killer.cancel()
        return killed ? nil : code
    }

    /// Waits until the output contains `text` (`count` times).
    public func waitForOutput(_ text: String, count: Int = 1, timeout: Duration = .seconds(30)) async throws -> Bool {
        try await eventually(timeout: timeout) { self.output.components(separatedBy: text).count > count }
    }

    deinit { unlink(outputPath) }
}
