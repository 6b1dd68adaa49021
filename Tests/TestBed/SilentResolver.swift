import Foundation
import Glibc

/// A DNS server that never answers, and a way to start a program that uses it as its only
/// name server: a host name lookup of that program hangs (30 s), as with a dead or blackholed
/// DNS server, while the rest of the machine resolves names as usual.
///
/// The server is a UDP socket on port 53 of a loopback address of its own (127.0.0.0/8 is all
/// loopback) that reads nothing. The program runs in a mount namespace of its own
/// (`unshare -m`) where a `resolv.conf` naming that address is mounted over
/// `/etc/resolv.conf`; the tests run as root.
public final class SilentResolver: Sendable {
    private let fd: Int32
    /// The `resolv.conf` of the programs started through `command(_:_:)`.
    public let resolvConfPath: String

    public init() throws {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestBedError(message: "socket failed: errno \(errno)") }
        for _ in 0..<20 {
            let address = "127.0.\(Int.random(in: 1...254)).\(Int.random(in: 2...254))"
            var socketAddress = sockaddr_in()
            socketAddress.sin_family = sa_family_t(AF_INET)
            socketAddress.sin_addr.s_addr = inet_addr(address)
            socketAddress.sin_port = UInt16(53).bigEndian
            let bound = withUnsafePointer(to: &socketAddress) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard bound == 0 else { continue }
            self.fd = fd
            resolvConfPath = "/tmp/powa-silent-resolver-\(UUID().uuidString).conf"
            try "nameserver \(address)\noptions timeout:30 attempts:1\n".write(
                toFile: resolvConfPath, atomically: true, encoding: .utf8)
            return
        }
        _ = Glibc.close(fd)
        throw TestBedError(message: "could not bind a UDP socket on port 53 of a loopback address: errno \(errno)")
    }

    /// The executable and arguments that run `executable` with `arguments` under this resolver.
    public func command(_ executable: String, _ arguments: [String]) -> (String, [String]) {
        (
            "/usr/bin/unshare",
            ["-m", "/bin/sh", "-c", "mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"", resolvConfPath, executable]
                + arguments
        )
    }

    deinit {
        _ = Glibc.close(fd)
        unlink(resolvConfPath)
    }
}
