import Foundation
import Glibc

/// glibc's own view of a running collector's heap, to tell a leak from allocator high water:
/// RSS that grows while the bytes in use stay flat is memory malloc keeps for reuse (free
/// chunks, arenas of threads that came and went); bytes in use that grow are objects kept.
///
/// A debugger cannot call `mallinfo2()` in the process on this machine (its kernel refuses to
/// restore a thread's registers after an inferior call: the process is left broken), so the
/// probe is a tiny library preloaded into the collector (`LD_PRELOAD`), compiled here with
/// `cc`: a thread of its own writes `mallinfo2()` to a file every second, and calls
/// `malloc_trim(0)` when asked to (a file appears). The collector is otherwise untouched; the
/// probe adds one thread that wakes once a second.
struct HeapProbe: Sendable {
    /// glibc's totals over every arena, in bytes.
    struct Reading: Sendable {
        /// Bytes of chunks in use: `uordblks` (arenas) + `hblkhd` (chunks mmapped on their own).
        let inUse: Int
        /// Free bytes kept in the arenas (`fordblks`).
        let free: Int
        /// Bytes the arenas hold from the system, in use or not: `arena` + `hblkhd`.
        let system: Int
    }

    let directory: String

    var libraryPath: String { directory + "/heap-probe.so" }
    var readingPath: String { directory + "/mallinfo" }
    var trimRequestPath: String { directory + "/trim" }

    /// What the collector's environment needs for the probe to run in it.
    var environment: [String: String] { ["LD_PRELOAD": libraryPath, "POWA_BENCH_HEAP_PROBE": directory] }

    /// Compiles the probe into `directory` (emptied first).
    static func build(directory: String = "/tmp/powa-bench-heap-probe") async throws -> HeapProbe {
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let probe = HeapProbe(directory: directory)
        let source = directory + "/heap-probe.c"
        try Self.source.write(toFile: source, atomically: true, encoding: .utf8)
        let compiled = try await ChildProcess.run(
            "/usr/bin/cc", ["-O2", "-shared", "-fPIC", "-o", probe.libraryPath, source, "-lpthread"])
        guard compiled.succeeded else { throw BenchError("could not compile the heap probe: \(compiled.standardError)") }
        return probe
    }

    /// The latest reading (at most a second old), nil when the probe has written none.
    func read() -> Reading? {
        guard let text = try? String(contentsOfFile: readingPath, encoding: .utf8) else { return nil }
        let values = text.split(whereSeparator: \.isWhitespace).compactMap { Int($0) }
        guard values.count == 4 else { return nil }
        // arena hblkhd uordblks fordblks
        return Reading(inUse: values[2] + values[1], free: values[3], system: values[0] + values[1])
    }

    /// Asks the probe for `malloc_trim(0)` (every arena gives its free pages back to the
    /// system) and waits until it has been done and read again; returns that reading.
    func trim(timeout: Duration = .seconds(10)) async throws -> Reading? {
        guard FileManager.default.createFile(atPath: trimRequestPath, contents: nil) else {
            throw BenchError("could not create \(trimRequestPath)")
        }
        let deadline = ContinuousClock.now + timeout
        while FileManager.default.fileExists(atPath: trimRequestPath) {
            guard ContinuousClock.now < deadline else { throw BenchError("the heap probe did not trim within \(timeout)") }
            try await Task.sleep(for: .milliseconds(100))
        }
        return read()
    }

    /// The probe's C source: a constructor starts the thread; the reading is written to a
    /// temporary file renamed over the last one, so that a reader never sees half of it.
    static let source = """
        #define _GNU_SOURCE
        #include <malloc.h>
        #include <pthread.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <unistd.h>

        static char reading[4096], temporary[4096], trim[4096];

        static void *probe(void *unused) {
            (void)unused;
            for (;;) {
                int trimmed = access(trim, F_OK) == 0;
                if (trimmed) malloc_trim(0);
                struct mallinfo2 m = mallinfo2();
                FILE *f = fopen(temporary, "w");
                if (f) {
                    fprintf(f, "%zu %zu %zu %zu\\n", m.arena, m.hblkhd, m.uordblks, m.fordblks);
                    fclose(f);
                    rename(temporary, reading);
                }
                if (trimmed) unlink(trim);
                sleep(1);
            }
            return NULL;
        }

        __attribute__((constructor)) static void start(void) {
            const char *directory = getenv("POWA_BENCH_HEAP_PROBE");
            if (!directory) return;
            snprintf(reading, sizeof reading, "%s/mallinfo", directory);
            snprintf(temporary, sizeof temporary, "%s/mallinfo.%d", directory, (int)getpid());
            snprintf(trim, sizeof trim, "%s/trim", directory);
            pthread_t thread;
            pthread_attr_t attributes;
            pthread_attr_init(&attributes);
            pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
            pthread_create(&thread, &attributes, probe, NULL);
        }
        """
}
