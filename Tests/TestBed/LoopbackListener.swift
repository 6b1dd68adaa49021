import Glibc

/// A TCP socket bound to 127.0.0.1 on a port the kernel chose. Listening, it never accepts:
/// the kernel completes the handshake, a client sends its first bytes, and nothing answers.
/// Closed at once, its port is one nobody listens on.
public struct LoopbackListener: Sendable {
    public let fd: Int32
    public let port: Int

    public init(listening: Bool = true) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestBedError(message: "socket failed: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0, !listening || listen(fd, 16) == 0 else {
            _ = Glibc.close(fd)
            throw TestBedError(message: "bind or listen failed: errno \(errno)")
        }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.fd = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    /// A port nobody listens on right now, on 127.0.0.1.
    public static func freePort() throws -> Int {
        let socket = try LoopbackListener(listening: false)
        socket.close()
        return socket.port
    }

    public func close() { _ = Glibc.close(fd) }
}
