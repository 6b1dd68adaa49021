import Foundation
import Glibc
import Synchronization

/// The datagram socket systemd listens on for `sd_notify` messages (`$NOTIFY_SOCKET`), played by
/// a test: it binds a socket file and keeps every message received, in order.
public final class NotifySocket: Sendable {
    public let path: String
    private let fd: Int32
    private let received = Mutex<[(message: String, at: ContinuousClock.Instant)]>([])
    private let closed = Atomic<Bool>(false)

    public init() throws {
        path = "/tmp/powa-notify-\(UUID().uuidString.prefix(8)).sock"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestBedError(message: "socket failed: errno \(errno)") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else {
            let error = errno
            _ = Glibc.close(fd)
            throw TestBedError(message: "bind \(path) failed: errno \(error)")
        }
        // Reads wake up every 100 ms to see whether the socket was closed.
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let thread = Thread { [self] in receive() }
        thread.start()
    }

    /// Every message so far, in order of arrival.
    public var messages: [String] { received.withLock { $0.map(\.message) } }

    /// When each message equal to `message` arrived.
    public func arrivals(of message: String) -> [ContinuousClock.Instant] {
        received.withLock { $0.filter { $0.message == message }.map(\.at) }
    }

    public func close() {
        closed.store(true, ordering: .relaxed)
        unlink(path)
    }

    private func receive() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !closed.load(ordering: .relaxed) {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count > 0 {
                let message = String(decoding: buffer[0..<count], as: UTF8.self)
                received.withLock { $0.append((message, .now)) }
            }
        }
        _ = Glibc.close(fd)
    }
}
