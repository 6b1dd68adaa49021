import Foundation
import Glibc
import Synchronization

/// Tells systemd what the daemon is doing (`Type=notify`), with the datagrams of
/// `sd_notify(3)` sent to `$NOTIFY_SOCKET`, so that no libsystemd is needed: `READY=1` once the
/// workers run, `RELOADING=1` during a reload, `STOPPING=1`, `STATUS=` lines that
/// `systemctl status` shows, and `WATCHDOG=1` keep-alives when the unit has `WatchdogSec=`.
///
/// Absent (nil) when the daemon was not started by systemd: nothing is sent then.
public final class SystemdNotifier: Sendable {
    private let fd: Int32
    private let address: [UInt8]
    /// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, when it is set for this
    /// process.
    public let watchdogInterval: Duration?
    /// Once `STOPPING=1` is sent, no `READY=1` (a reload still finishing) may follow it.
    private let isStopping = Atomic<Bool>(false)

    /// From the environment systemd gives the service; nil without `$NOTIFY_SOCKET`.
    public init?(environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty, path.utf8.count < 108 else { return nil }
        // An abstract socket is written with a leading '@', which stands for a NUL byte.
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        self.fd = fd
        address = bytes
        let pid = environment["WATCHDOG_PID"].flatMap { Int32($0) }
        if let microseconds = environment["WATCHDOG_USEC"].flatMap(UInt64.init), microseconds > 0,
            pid == nil || pid == getpid()
        {
            watchdogInterval = .microseconds(microseconds / 2)
        } else {
            watchdogInterval = nil
        }
    }

    deinit { _ = Glibc.close(fd) }

    /// Sends one notification (`KEY=value` lines); a lost one is not an error.
    public func send(_ lines: [String]) {
        let message = Array(lines.joined(separator: "\n").utf8)
        var socketAddress = sockaddr_un()
        socketAddress.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &socketAddress.sun_path) { path in
            path.copyBytes(from: address)
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + address.count)
        _ = message.withUnsafeBytes { body in
            withUnsafePointer(to: &socketAddress) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    // Never blocks (a full socket buffer loses the message, as sd_notify may).
                    sendto(fd, body.baseAddress, body.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT), $0, length)
                }
            }
        }
    }

    public func ready(status: String) {
        guard !isStopping.load(ordering: .relaxed) else { return }
        send(["READY=1", "STATUS=\(Self.oneLine(status))"])
    }

    /// A reload begins; `ready(status:)` ends it.
    public func reloading() {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        send(["RELOADING=1", "MONOTONIC_USEC=\(UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000)"])
    }

    public func stopping() {
        isStopping.store(true, ordering: .relaxed)
        send(["STOPPING=1"])
    }

    public func status(_ status: String) { send(["STATUS=\(Self.oneLine(status))"]) }

    /// A value on one line: a newline would start another `KEY=value` of the message.
    static func oneLine(_ text: String) -> String {
        text.split(whereSeparator: \.isNewline).joined(separator: " ")
    }

    public func watchdog() { send(["WATCHDOG=1"]) }
}
